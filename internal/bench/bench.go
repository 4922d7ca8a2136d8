// Package bench is Parley's load generator, run as `parley bench`. It speaks only the
// public HTTP and WebSocket contract (docs/protocol.md), signing in through POST /join
// like a browser, so it measures any Parley deployment from the outside, as a user's
// checker would: deliveries per second, the latency of a message through the room, and
// whether any message was lost or duplicated on the way.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Modes of a run.
const (
	ModeChat = "chat" // closed loop: R rooms × 2 clients, each waits for its own message
	ModeIdle = "idle" // hold N joined, silent connections and measure server memory
)

// Defaults for zero Options values: the reference run of docs/BENCHMARKS.md is R=100 for 20 s.
const (
	DefaultURL         = "http://127.0.0.1:8080"
	DefaultRooms       = 100
	DefaultDuration    = 20 * time.Second
	DefaultWarmup      = 3 * time.Second
	DefaultSize        = 32
	DefaultConns       = 10000
	DefaultParallel    = 64
	DefaultDrain       = 5 * time.Second
	DefaultResendAfter = 5 * time.Second
	DefaultIdleRooms   = 10
	DefaultIdleChat    = 5 * time.Second
	DefaultSettle      = 3 * time.Second
)

// ErrIntegrity is returned by Run (wrapped) when a message was lost or duplicated, so
// `parley bench` exits non-zero: a fast number with a broken delivery is no number.
var ErrIntegrity = errors.New("messages lost or duplicated")

// Options is one benchmark run. ParseFlags fills it from the command line; zero values
// take the defaults above.
type Options struct {
	Mode        string        // ModeChat or ModeIdle
	Proto       string        // ProtoParley, ProtoCentrifugo or ProtoHub
	URL         string        // the server, scheme://host[:port]
	PeerURL     string        // chat: where each room's second client connects (another replica); "" = URL
	Rooms       int           // chat: rooms, each with two clients
	Duration    time.Duration // chat: measured time after warmup
	Warmup      time.Duration // chat: time before measuring starts
	Size        int           // chat: message text bytes
	Conns       int           // idle: connections to hold (rounded up to pairs)
	Parallel    int           // connections being set up at once
	Drain       time.Duration // how long to wait for in-flight messages at the end
	ResendAfter time.Duration // resend a message (same id) not back after this long
	IdleRooms   int           // idle: rooms of the fresh chat run beside the held connections (0: none)
	IdleChat    time.Duration // idle: duration of that fresh chat
	Settle      time.Duration // idle: wait after connecting before reading /metrics
	JSON        bool          // print the result as JSON instead of a table
	CPUProfile  string        // write the load generator's own CPU profile here
	LatencyLog  string        // chat: write every measured message's send time, latency and client here (CSV)
	RunID       string        // names rooms and emails; random when empty
	Quiet       bool          // no live progress line
	ServerPIDs  []int         // the server's processes: CPU and memory from /proc instead of /metrics
}

// NewFlagSet returns the flag set of `parley bench`, writing into o. o's current values
// are the defaults shown.
func NewFlagSet(o *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("parley bench", flag.ContinueOnError)
	fs.StringVar(&o.Mode, "mode", o.Mode, "chat (closed loop) or idle (hold connections); also accepted as the first argument")
	fs.StringVar(&o.Proto, "proto", o.Proto, "protocol of the server: parley, centrifugo (JSON over WebSocket, client.insecure) or hub (internal/bench/barehub)")
	fs.StringVar(&o.URL, "url", o.URL, "site to measure")
	fs.StringVar(&o.PeerURL, "peer-url", o.PeerURL, "chat: a second replica; each room's second client signs in and connects there, so every message crosses the fan-out")
	fs.IntVar(&o.Rooms, "rooms", o.Rooms, "chat: rooms, two clients each")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "chat: measured duration after warmup")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "chat: warmup before measuring")
	fs.IntVar(&o.Size, "size", o.Size, "chat: message text bytes")
	fs.IntVar(&o.Conns, "conns", o.Conns, "idle: connections to hold")
	fs.IntVar(&o.Parallel, "parallel", o.Parallel, "connections set up at once")
	fs.DurationVar(&o.Drain, "drain", o.Drain, "wait this long for in-flight messages at the end")
	fs.DurationVar(&o.ResendAfter, "resend-after", o.ResendAfter, "resend (same id) a message not back after this long")
	fs.IntVar(&o.IdleRooms, "idle-rooms", o.IdleRooms, "idle: rooms of a fresh chat run before and while holding the connections (0: skip)")
	fs.DurationVar(&o.IdleChat, "idle-chat", o.IdleChat, "idle: duration of that fresh chat")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "idle: wait after connecting before reading /metrics")
	fs.BoolVar(&o.JSON, "json", o.JSON, "print the result as JSON")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write the load generator's CPU profile to this file")
	fs.StringVar(&o.LatencyLog, "latency-log", o.LatencyLog, "chat: write each measured message's send time (unix µs), latency (µs) and client to this CSV file, to see when the slow ones happen")
	fs.StringVar(&o.RunID, "run-id", o.RunID, "name of this run in room names and emails (random by default)")
	fs.BoolVar(&o.Quiet, "quiet", o.Quiet, "no live progress line")
	fs.Func("server-pid", "the server's process id (repeat, or comma-separated, for replicas): its CPU and memory are read from /proc instead of its /metrics", func(v string) error {
		for _, f := range strings.Split(v, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return fmt.Errorf("not a process id: %q", f)
			}
			o.ServerPIDs = append(o.ServerPIDs, pid)
		}
		return nil
	})
	return fs
}

// DefaultOptions returns the options of a run with no flags.
func DefaultOptions() Options {
	return Options{
		Mode: ModeChat, Proto: ProtoParley, URL: DefaultURL, Rooms: DefaultRooms, Duration: DefaultDuration,
		Warmup: DefaultWarmup, Size: DefaultSize, Conns: DefaultConns, Parallel: DefaultParallel,
		Drain: DefaultDrain, ResendAfter: DefaultResendAfter, IdleRooms: DefaultIdleRooms,
		IdleChat: DefaultIdleChat, Settle: DefaultSettle,
	}
}

// ParseFlags reads the arguments after `parley bench`: an optional mode word (chat or
// idle) then flags. Usage errors come back as errors whose text includes the usage;
// -h gives an error wrapping flag.ErrHelp.
func ParseFlags(args []string) (Options, error) {
	o := DefaultOptions()
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.Mode, args = args[0], args[1:]
	}
	fs := NewFlagSet(&o)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w\n%s", err, Usage())
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), Usage())
	}
	return o, o.Validate()
}

// Usage returns the help text of `parley bench`.
func Usage() string {
	o := DefaultOptions()
	return usageText("usage: parley bench [chat|idle] [flags]\n\n"+
		"  chat: R rooms x 2 clients in a closed loop; reports deliveries/s, latency, loss.\n"+
		"  idle: hold N joined connections; reports server memory per connection from /metrics.\n"+
		"  parley bench compare -h: Parley beside Centrifugo and the bare hub, interleaved, as ratios.\n"+
		"  parley bench hub --addr 127.0.0.1:8090: serve the bare hub (internal/bench/barehub).\n"+
		"  parley bench plot [-o docs/bench.svg] [label=]result.json...: draw results as SVG.\n\n",
		NewFlagSet(&o))
}

// usageText is intro followed by the flags of fs with their defaults.
func usageText(intro string, fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString(intro)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// Validate checks o after defaults are applied.
func (o *Options) Validate() error {
	o.applyDefaults()
	if o.Mode != ModeChat && o.Mode != ModeIdle {
		return fmt.Errorf("unknown mode %q: want chat or idle", o.Mode)
	}
	switch o.Proto {
	case ProtoParley, ProtoCentrifugo, ProtoHub:
	default:
		return fmt.Errorf("unknown --proto %q: want parley, centrifugo or hub", o.Proto)
	}
	for _, f := range []struct{ name, value string }{{"--url", o.URL}, {"--peer-url", o.PeerURL}} {
		if f.value == "" && f.name == "--peer-url" {
			continue
		}
		u, err := url.Parse(f.value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s %q: want http(s)://host[:port]", f.name, f.value)
		}
	}
	switch {
	case o.Rooms < 1:
		return fmt.Errorf("--rooms must be at least 1")
	case o.Conns < 2:
		return fmt.Errorf("--conns must be at least 2")
	case o.Size < 1 || o.Size > 4000:
		return fmt.Errorf("--size must be 1..4000 bytes")
	case o.Duration <= 0 || o.Warmup < 0:
		return fmt.Errorf("--duration must be positive and --warmup not negative")
	case o.IdleRooms < 0:
		return fmt.Errorf("--idle-rooms must not be negative")
	case len(o.RunID) > 12 || strings.ContainsAny(o.RunID, "@ /.|"):
		return fmt.Errorf("--run-id: at most 12 letters, digits, '-' or '_'")
	}
	return nil
}

func (o *Options) applyDefaults() {
	d := DefaultOptions()
	if o.Mode == "" {
		o.Mode = d.Mode
	}
	if o.URL == "" {
		o.URL = d.URL
	}
	if o.Proto == "" {
		o.Proto = d.Proto
	}
	o.URL = strings.TrimRight(o.URL, "/")
	o.PeerURL = strings.TrimRight(o.PeerURL, "/")
	if o.Parallel <= 0 {
		o.Parallel = d.Parallel
	}
	if o.Drain <= 0 {
		o.Drain = d.Drain
	}
	if o.ResendAfter <= 0 {
		o.ResendAfter = d.ResendAfter
	}
	if o.IdleChat <= 0 {
		o.IdleChat = d.IdleChat
	}
	if o.RunID == "" {
		o.RunID = newRunID()
	}
}

// Run performs the benchmark o describes, prints the result to stdout (table or JSON)
// and a live progress line to stderr. It returns an error wrapping ErrIntegrity when a
// message was lost or duplicated, and other errors when the run could not be made.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if lim, err := raiseFileLimit(); err == nil && !o.Quiet {
		fmt.Fprintf(stderr, "bench: run %s, file descriptor limit %d\n", o.RunID, lim)
	}
	load := loadAverage()
	stop, err := startCPUProfile(o.CPUProfile)
	if err != nil {
		return err
	}
	defer stop()
	var res *Result
	switch o.Mode {
	case ModeIdle:
		res, err = runIdle(ctx, o, stderr)
	default:
		res, err = runChat(ctx, o, o.RunID, stderr)
	}
	if res == nil {
		return err
	}
	res.Machine = describeMachine()
	res.Machine.LoadBefore = load
	if perr := res.print(stdout, o.JSON); perr != nil && err == nil {
		err = perr
	}
	if err == nil {
		err = res.integrityError()
	}
	return err
}
