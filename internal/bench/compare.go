package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// `parley bench compare` measures Parley beside the servers it is judged against,
// with this package's closed loop for every one of them, interleaved in one sitting
// (A B C, then C B A, …) so that a machine whose speed drifts treats them alike, and
// prints each figure as a ratio of the others': a ratio measured in one run survives a
// change of machine, an absolute number from another day does not.
//
// Each run gets a freshly started server on a free loopback port, stopped after it.

// Servers a comparison can run.
const (
	ServerParley     = "parley"          // embedded defaults: SQLite, in-process bus
	ServerCentrifugo = "centrifugo"      // Centrifugo, memory engine, stores nothing
	ServerHub        = "hub"             // internal/bench/barehub: relays, stores nothing
	ServerMariaDB    = "parley-mariadb"  // one replica, sessions and messages in MariaDB
	ServerReplicas   = "parley-replicas" // two replicas over Redis, MariaDB messages, rooms split
	ServerBase       = "parley-base"     // another parley binary (--base) on the embedded defaults: a change against the build it changes
)

// CompareOptions is one comparison.
type CompareOptions struct {
	Servers    []string
	Rooms      []int
	Rounds     int // each round runs every server once; odd rounds in reverse order
	Duration   time.Duration
	Warmup     time.Duration
	IdleConns  int    // idle run per server with this many connections (0: none)
	Parley     string // the parley binary to serve (default: this one)
	Base       string // the parley binary of parley-base
	Centrifugo string // the centrifugo binary
	MySQLDSN   string // for the MariaDB shapes: a fresh database is made beside the DSN's
	RedisURL   string // for the replicas shape
	JSON       string // also write every result here
	Build      string // the build measured, for the report (default: from the binary's VCS stamp)
	Quick      bool
}

func compareFlags(o *CompareOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("parley bench compare", flag.ContinueOnError)
	fs.Func("servers", "comma-separated servers to compare, in the order of the first round: parley, centrifugo, hub, parley-mariadb, parley-replicas, parley-base (default parley,centrifugo,hub)", func(v string) error {
		o.Servers = splitList(v)
		return nil
	})
	fs.Func("rooms", "comma-separated room counts (default 10,100,1000)", func(v string) error {
		o.Rooms = nil
		for _, f := range splitList(v) {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				return fmt.Errorf("not a room count: %q", f)
			}
			o.Rooms = append(o.Rooms, n)
		}
		return nil
	})
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds per room count (2: A B C C B A)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured time of each chat run")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "warmup of each chat run")
	fs.IntVar(&o.IdleConns, "idle", o.IdleConns, "idle connections per server (0: no idle runs)")
	fs.StringVar(&o.Parley, "parley", o.Parley, "parley binary to serve (default: this one)")
	fs.StringVar(&o.Base, "base", o.Base, "parley binary of parley-base, the build a change is measured against (`make bench-ab BASE=<commit>` builds one)")
	fs.StringVar(&o.Centrifugo, "centrifugo", o.Centrifugo, "centrifugo binary (v6; `make bench-compare` installs v6.9.1)")
	fs.StringVar(&o.MySQLDSN, "mysql-dsn", o.MySQLDSN, "MariaDB for parley-mariadb and parley-replicas (default $PARLEY_MYSQL_DSN); a fresh database beside the DSN's is made and dropped")
	fs.StringVar(&o.RedisURL, "redis-url", o.RedisURL, "Redis for parley-replicas (default $PARLEY_REDIS_URL); keys under a fresh prefix")
	fs.StringVar(&o.JSON, "json", o.JSON, "also write every run's result to this file")
	fs.StringVar(&o.Build, "build", o.Build, "name of the build measured, for the report (default: the binary's VCS revision)")
	fs.BoolVar(&o.Quick, "quick", o.Quick, "a check of the tooling, not a measurement: rooms 10,100, 3 s runs, one round, 1,000 idle connections")
	return fs
}

func defaultCompareOptions() CompareOptions {
	return CompareOptions{
		Servers: []string{ServerParley, ServerCentrifugo, ServerHub}, Rooms: []int{10, 100, 1000},
		Rounds: 2, Duration: 12 * time.Second, Warmup: 3 * time.Second, IdleConns: 10000,
		Centrifugo: filepath.Join(cacheDir(), "parley-stack", "bin", "centrifugo"),
		MySQLDSN:   os.Getenv("PARLEY_MYSQL_DSN"), RedisURL: os.Getenv("PARLEY_REDIS_URL"),
	}
}

// cacheDir is where the comparison's tools are installed, outside the repository.
func cacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache")
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseCompare reads the flags of `parley bench compare`.
func parseCompare(args []string) (CompareOptions, error) {
	o := defaultCompareOptions()
	fs := compareFlags(&o)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w\n%s", err, compareUsage())
	}
	if o.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rooms"] {
			o.Rooms = []int{10, 100}
		}
		if !set["rounds"] {
			o.Rounds = 1
		}
		if !set["duration"] {
			o.Duration = 3 * time.Second
		}
		if !set["warmup"] {
			o.Warmup = time.Second
		}
		if !set["idle"] {
			o.IdleConns = 1000
		}
	}
	for _, s := range o.Servers {
		switch s {
		case ServerParley, ServerCentrifugo, ServerHub:
		case ServerBase:
			if o.Base == "" {
				return o, fmt.Errorf("%s needs --base, the parley binary to measure against", s)
			}
		case ServerMariaDB, ServerReplicas:
			if o.MySQLDSN == "" {
				return o, fmt.Errorf("%s needs --mysql-dsn or PARLEY_MYSQL_DSN", s)
			}
			if s == ServerReplicas && o.RedisURL == "" {
				return o, fmt.Errorf("%s needs --redis-url or PARLEY_REDIS_URL", s)
			}
		default:
			return o, fmt.Errorf("unknown server %q", s)
		}
	}
	switch {
	case len(o.Servers) == 0 || len(o.Rooms) == 0:
		return o, errors.New("nothing to compare")
	case o.Rounds < 1 || o.Duration <= 0 || o.Warmup < 0 || o.IdleConns < 0:
		return o, errors.New("--rounds must be at least 1, --duration positive, --warmup and --idle not negative")
	}
	if o.Parley == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, err
		}
		o.Parley = exe
	}
	return o, nil
}

func compareUsage() string {
	o := defaultCompareOptions()
	return usageText("usage: parley bench compare [flags]\n\n"+
		"  Starts each server on a free loopback port, runs the same closed loop against it,\n"+
		"  interleaved, and prints the figures as ratios (docs/BENCHMARKS.md).\n\n",
		compareFlags(&o))
}

// CompareRun is one run of a comparison.
type CompareRun struct {
	Server     string  `json:"server"`
	Rooms      int     `json:"rooms,omitempty"` // 0 for an idle run
	Round      int     `json:"round"`
	LoadBefore float64 `json:"load_avg_before"`
	Error      string  `json:"error,omitempty"`
	Result     *Result `json:"result,omitempty"`
}

// CompareResult is a whole comparison, as --json writes it.
type CompareResult struct {
	StartedAt time.Time    `json:"started_at"`
	EndedAt   time.Time    `json:"ended_at"`
	Build     string       `json:"build"`
	Machine   Machine      `json:"machine"`
	Options   compareEcho  `json:"options"`
	Runs      []CompareRun `json:"runs"`
}

type compareEcho struct {
	Servers   []string `json:"servers"`
	Rooms     []int    `json:"rooms"`
	Rounds    int      `json:"rounds"`
	Duration  float64  `json:"duration_s"`
	Warmup    float64  `json:"warmup_s"`
	IdleConns int      `json:"idle_conns"`
}

// buildID is the VCS revision this binary was built from ("+dirty" when the tree had
// changes), or "unknown".
func buildID() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 7 {
		rev = rev[:7]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// Compare runs the comparison o describes and prints its report to stdout. It fails
// when a run could not be made or lost or duplicated a message at a server that
// stores messages (Parley); the others' losses are reported, not fatal.
func Compare(ctx context.Context, o CompareOptions, stdout, stderr io.Writer) error {
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "bench compare: open files limit: %v\n", err)
	}
	env, err := newServerEnv(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	build := o.Build
	if build == "" {
		build = buildID()
	}
	res := &CompareResult{StartedAt: time.Now().UTC(), Build: build, Machine: describeMachine(),
		Options: compareEcho{Servers: o.Servers, Rooms: o.Rooms, Rounds: o.Rounds,
			Duration: o.Duration.Seconds(), Warmup: o.Warmup.Seconds(), IdleConns: o.IdleConns}}
	res.Machine.LoadBefore = loadAverage()
	total := len(o.Rooms)*o.Rounds*len(o.Servers) + len(o.Servers)*min(o.IdleConns, 1)
	n := 0
	var failed error
	do := func(server string, rooms, round int) {
		n++
		fmt.Fprintf(stderr, "[%d/%d] %s %s round %d (load %.1f)\n", n, total, server, describeSize(rooms, o.IdleConns), round+1, loadAverage())
		run := env.run(ctx, server, rooms, o)
		run.Round = round
		if run.Error != "" {
			fmt.Fprintf(stderr, "    failed: %s\n", run.Error)
			if failed == nil {
				failed = fmt.Errorf("%s %s: %s", server, describeSize(rooms, o.IdleConns), run.Error)
			}
		} else if r := run.Result; r.Idle == nil {
			fmt.Fprintf(stderr, "    %.0f deliveries/s, p99 %.1f ms, %d lost, %d duplicated\n",
				r.DeliveriesPerSec, r.Latency.P99, r.Lost, r.Duplicated)
		}
		res.Runs = append(res.Runs, run)
	}
	for _, rooms := range o.Rooms {
		for round := 0; round < o.Rounds && ctx.Err() == nil; round++ {
			for i := range o.Servers {
				s := o.Servers[i]
				if round%2 == 1 {
					s = o.Servers[len(o.Servers)-1-i]
				}
				if ctx.Err() == nil {
					do(s, rooms, round)
				}
			}
		}
	}
	if o.IdleConns > 0 {
		for _, s := range o.Servers {
			if ctx.Err() == nil {
				do(s, 0, 0)
			}
		}
	}
	res.EndedAt = time.Now().UTC()
	if o.JSON != "" {
		if err := writeJSONFile(o.JSON, res); err != nil {
			return err
		}
	}
	res.writeReport(stdout)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed != nil {
		return failed
	}
	return res.integrityError()
}

func describeSize(rooms, idle int) string {
	if rooms == 0 {
		return fmt.Sprintf("idle %d", idle)
	}
	return fmt.Sprintf("R=%d", rooms)
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// storesMessages reports whether server promises every acked message is kept and
// delivered once: only then is a loss a failure of the comparison.
func storesMessages(server string) bool {
	return server != ServerCentrifugo && server != ServerHub
}

func (r *CompareResult) integrityError() error {
	for _, run := range r.Runs {
		if run.Result == nil || !storesMessages(run.Server) {
			continue
		}
		if err := run.Result.integrityError(); err != nil {
			return fmt.Errorf("%s %s: %w", run.Server, describeSize(run.Rooms, r.Options.IdleConns), err)
		}
	}
	return nil
}
