package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"parley/internal/bench/barehub"
)

// TestChatAgainstBareHub runs the closed loop against the bare hub the comparison
// uses as its floor: every message comes back to its sender and reaches its peer
// exactly once, and no room sees another's messages.
func TestChatAgainstBareHub(t *testing.T) {
	srv := httptest.NewServer(barehub.New())
	t.Cleanup(srv.Close)
	o := DefaultOptions()
	o.URL, o.Proto, o.Rooms, o.Warmup, o.Duration, o.Quiet = srv.URL, ProtoHub, 4, 200*time.Millisecond, time.Second, true
	res, err := runChat(context.Background(), o, "hub", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rooms != 4 || res.Deliveries == 0 || res.Latency.Count == 0 {
		t.Fatalf("rooms %d, deliveries %d, latencies %d", res.Rooms, res.Deliveries, res.Latency.Count)
	}
	if err := res.integrityError(); err != nil || res.Foreign != 0 {
		t.Errorf("integrity: %v, foreign %d", err, res.Foreign)
	}
}

// fakeCentrifugo speaks the part of Centrifugo's JSON client protocol the generator
// uses: connect, subscribe, publish (a reply to the publisher and a publication push
// to every subscriber, the publisher included), several replies in one frame separated
// by newlines, and a ping ({}) that must be answered.
type fakeCentrifugo struct {
	mu     sync.Mutex
	subs   map[string][]*fakeCentConn
	pongs  atomic.Int64
	bad    atomic.Int64
	pinged sync.Once
}

type fakeCentConn struct {
	mu sync.Mutex
	nc net.Conn
}

func (c *fakeCentConn) send(lines ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = wsutil.WriteServerText(c.nc, []byte(strings.Join(lines, "\n")))
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/connection/websocket" {
		http.NotFound(w, r)
		return
	}
	nc, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer nc.Close()
	c := &fakeCentConn{nc: nc}
	for {
		data, err := wsutil.ReadClientText(nc)
		if err != nil {
			return
		}
		if string(data) == "{}" {
			f.pongs.Add(1)
			continue
		}
		var cmd struct {
			ID        int `json:"id"`
			Connect   *struct{}
			Subscribe *struct {
				Channel string `json:"channel"`
			}
			Publish *struct {
				Channel string          `json:"channel"`
				Data    json.RawMessage `json:"data"`
			}
		}
		if err := json.Unmarshal(data, &cmd); err != nil {
			f.bad.Add(1)
			return
		}
		switch {
		case cmd.Connect != nil:
			c.send(`{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`)
		case cmd.Subscribe != nil:
			f.mu.Lock()
			f.subs[cmd.Subscribe.Channel] = append(f.subs[cmd.Subscribe.Channel], c)
			f.mu.Unlock()
			c.send(`{"id":2,"subscribe":{}}`)
			f.pinged.Do(func() { c.send(`{}`) })
		case cmd.Publish != nil:
			push := `{"push":{"channel":"` + cmd.Publish.Channel + `","pub":{"data":` + string(cmd.Publish.Data) + `}}}`
			f.mu.Lock()
			members := f.subs[cmd.Publish.Channel]
			f.mu.Unlock()
			for _, m := range members {
				if m == c {
					m.send(`{"id":`+itoa(cmd.ID)+`,"publish":{}}`, push)
				} else {
					m.send(push)
				}
			}
		default:
			f.bad.Add(1)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestChatAgainstCentrifugoProtocol runs the closed loop in Centrifugo's protocol: the
// handshake, publications checked like Parley's messages (nothing lost or doubled),
// batched replies split, and the server's ping answered.
func TestChatAgainstCentrifugoProtocol(t *testing.T) {
	f := &fakeCentrifugo{subs: make(map[string][]*fakeCentConn)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	o := DefaultOptions()
	o.URL, o.Proto, o.Rooms, o.Warmup, o.Duration, o.Quiet = srv.URL, ProtoCentrifugo, 3, 200*time.Millisecond, time.Second, true
	res, err := runChat(context.Background(), o, "cent", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rooms != 3 || res.Deliveries == 0 || res.Acks == 0 {
		t.Fatalf("rooms %d, deliveries %d, acks %d, errors %v", res.Rooms, res.Deliveries, res.Acks, res.Errors)
	}
	if err := res.integrityError(); err != nil || res.Foreign != 0 || len(res.Errors) != 0 {
		t.Errorf("integrity: %v, foreign %d, errors %v", err, res.Foreign, res.Errors)
	}
	if f.pongs.Load() != 1 || f.bad.Load() != 0 {
		t.Errorf("pongs %d (want 1), malformed commands %d", f.pongs.Load(), f.bad.Load())
	}
}

// TestPushData finds a publication's data in a push, braces inside strings included.
func TestPushData(t *testing.T) {
	for line, want := range map[string]string{
		`{"push":{"channel":"r","pub":{"data":{"id":"x-1","text":"a}b{"}}}}`:    `{"id":"x-1","text":"a}b{"}`,
		`{"push":{"channel":"r","pub":{"data": {"t":"q\"}"},"offset":3}}}`:      `{"t":"q\"}"}`,
		`{"push":{"channel":"r","join":{"info":{"user":"","client":"c"}}}}`:     ``,
		`{"push":{"channel":"r","pub":{"data":"not an object"}}}`:               ``,
		`{"push":{"channel":"r","pub":{"data":{"id":"x-1","text":"unterminated`: ``,
	} {
		if got := string(pushData([]byte(line))); got != want {
			t.Errorf("pushData(%s) = %q, want %q", line, got, want)
		}
	}
}

// TestProcReadings reads this process's CPU time and resident memory the way the
// comparison reads a server's.
func TestProcReadings(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	pid := os.Getpid()
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn a little CPU so the reading is not 0
	}
	if cpu := procCPUSeconds([]int{pid}); cpu <= 0 {
		t.Errorf("procCPUSeconds = %v", cpu)
	}
	if rss, err := procRSS([]int{pid}); err != nil || rss < 1<<20 {
		t.Errorf("procRSS = %v, %v", rss, err)
	}
	// The machine's idle time: idle plus iowait of the "cpu" line, in seconds.
	stat := "cpu  4705 150 1120 16250 520 0 30 0 0 0\ncpu0 2352 75 560 8125 260 0 15 0 0 0\n"
	if got := statIdleSeconds([]byte(stat)); got != 167.7 {
		t.Errorf("statIdleSeconds = %v, want 167.7 (16250+520 ticks)", got)
	}
	if got := statIdleSeconds([]byte("intr 1 2 3\n")); got != -1 {
		t.Errorf("statIdleSeconds without a cpu line = %v, want -1", got)
	}
	if idle := machineIdleSeconds(); idle <= 0 {
		t.Errorf("machineIdleSeconds = %v; this machine has been idle for a while since it started", idle)
	}
	if cpu := procCPUSeconds([]int{1 << 30}); cpu != -1 {
		t.Errorf("procCPUSeconds of no process = %v, want -1", cpu)
	}
	// Kernel time: write to a file until this process has spent some in the kernel.
	f, err := os.CreateTemp(t.TempDir(), "sys")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	for end := time.Now().Add(5 * time.Second); ; {
		for range 200 {
			if _, err := f.WriteAt(buf, 0); err != nil {
				t.Fatal(err)
			}
		}
		total, sys := procCPUTimes([]int{pid})
		if sys > 0 && sys <= total {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("procCPUTimes = %v total, %v in the kernel; want some kernel time, at most the total", total, sys)
		}
	}
}

// TestCompareReport checks the ratios and verdicts of a comparison's report.
func TestCompareReport(t *testing.T) {
	chat := func(server string, rooms int, dps, p99, cpu float64, lost int64) CompareRun {
		r := &Result{Mode: ModeChat, RoomsAsked: rooms, DeliveriesPerSec: dps, ServerCPUPerDelivery: cpu}
		r.Latency.P99 = p99
		r.Lost = lost
		return CompareRun{Server: server, Rooms: rooms, LoadBefore: 1, Result: r}
	}
	res := &CompareResult{
		Options: compareEcho{Servers: []string{ServerParley, ServerCentrifugo, ServerHub, ServerMariaDB}, Rooms: []int{100}, Rounds: 2},
		Machine: Machine{NumCPU: 2},
		Runs: []CompareRun{
			chat(ServerParley, 100, 50000, 30, 20, 0), chat(ServerCentrifugo, 100, 60000, 20, 16, 0),
			chat(ServerHub, 100, 90000, 15, 11, 0), chat(ServerMariaDB, 100, 30000, 20, 22, 0),
			chat(ServerMariaDB, 100, 30000, 20, 22, 0), chat(ServerHub, 100, 110000, 13, 11, 0),
			chat(ServerCentrifugo, 100, 60000, 22, 16, 0), chat(ServerParley, 100, 70000, 26, 20, 0),
		},
	}
	res.Runs[0].Result.MachineIdle, res.Runs[7].Result.MachineIdle = 0.2, 0.1 // Parley's runs
	var out bytes.Buffer
	res.writeReport(&out)
	if !regexp.MustCompile(`(?m)^ *parley +60000 +28\.0 +20\.0 +0\.0 +0\.15 +0 +0 +50000 / 70000`).MatchString(out.String()) {
		t.Errorf("the report's parley row lacks the mean idle cores (0.15):\n%s", out.String())
	}
	for _, want := range []string{
		"parley / centrifugo: 1.00× deliveries/s, 1.33× p99, 1.25× server CPU per delivery (target ≥ 1.0×: met)",
		"parley / bare hub: 0.60× deliveries/s, 2.00× p99, 1.82× server CPU per delivery (targets ≥ 0.8×: missed; p99 ≤ 1.3×: missed)",
		"Parley at 0.60×, 40% short",
		"parley-mariadb / parley (embedded): 0.50× deliveries/s, 0.71× p99, 1.10× server CPU per delivery",
		"parley: 0 lost, 0 duplicated (target: met)",
		"50000 / 70000",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if err := res.integrityError(); err != nil {
		t.Error(err)
	}
	res.Runs = append(res.Runs, chat(ServerHub, 100, 1, 1, 1, 5))
	if err := res.integrityError(); err != nil {
		t.Errorf("a loss at a server that stores nothing failed the comparison: %v", err)
	}
	res.Runs = append(res.Runs, chat(ServerParley, 100, 1, 1, 1, 1))
	if err := res.integrityError(); err == nil {
		t.Error("a loss at Parley did not fail the comparison")
	}
}

// TestCompareAgainstBase checks a change measured against the build it changes:
// parley-base needs its binary, and the report gives the ratio of the means and the
// ratio within each round, where a machine that slowed between rounds cancels out.
func TestCompareAgainstBase(t *testing.T) {
	if _, err := parseCompare([]string{"--servers", "parley,parley-base,hub"}); err == nil || !strings.Contains(err.Error(), "--base") {
		t.Fatalf("parley-base without --base: err = %v", err)
	}
	o, err := parseCompare([]string{"--servers", "parley,parley-base,hub", "--base", "/tmp/parley-old", "--rounds", "3"})
	if err != nil || o.Base != "/tmp/parley-old" {
		t.Fatalf("parseCompare = %+v, %v", o, err)
	}
	chat := func(server string, round int, dps, p99 float64) CompareRun {
		r := &Result{Mode: ModeChat, RoomsAsked: 1000, DeliveriesPerSec: dps}
		r.Latency.P99 = p99
		return CompareRun{Server: server, Rooms: 1000, Round: round, Result: r}
	}
	res := &CompareResult{
		Options: compareEcho{Servers: []string{ServerParley, ServerBase, ServerHub}, Rooms: []int{1000}, Rounds: 3},
		Machine: Machine{NumCPU: 2},
		Runs: []CompareRun{
			// A fast round, a slow one, a fast one: the means' ratio mixes them,
			// each round's ratio does not.
			chat(ServerParley, 0, 110, 90), chat(ServerBase, 0, 100, 100), chat(ServerHub, 0, 120, 60),
			chat(ServerHub, 1, 60, 120), chat(ServerBase, 1, 50, 200), chat(ServerParley, 1, 60, 150),
			chat(ServerParley, 2, 90, 110), chat(ServerBase, 2, 100, 100), chat(ServerHub, 2, 120, 60),
		},
	}
	var out bytes.Buffer
	res.writeReport(&out)
	for _, want := range []string{
		"parley / parley-base: 1.04× deliveries/s",
		"parley / parley-base, paired by round: 1.07× deliveries/s (0.90–1.20; more in 2 of 3 rounds), 0.92× p99 (0.75–1.10)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPlot draws a comparison's series (one per server, the mean of its runs) and a
// plain result's beside them.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	run := func(server string, rooms int, dps, p99 float64) CompareRun {
		r := &Result{Mode: ModeChat, Rooms: rooms, DeliveriesPerSec: dps}
		r.Latency.P99 = p99
		return CompareRun{Server: server, Rooms: rooms, Result: r}
	}
	cmp := &CompareResult{Runs: []CompareRun{
		run(ServerParley, 100, 40000, 20), run(ServerParley, 100, 60000, 30), run(ServerHub, 100, 90000, 10),
		run(ServerHub, 1000, 70000, 80), {Server: ServerHub, Rooms: 0, Result: &Result{Mode: ModeIdle}},
	}}
	if err := writeJSONFile(dir+"/cmp.json", cmp); err != nil {
		t.Fatal(err)
	}
	single := &Result{Mode: ModeChat, Rooms: 10, DeliveriesPerSec: 12345}
	if err := writeJSONFile(dir+"/r10.json", single); err != nil {
		t.Fatal(err)
	}
	out := dir + "/bench.svg"
	if err := plotMain([]string{"-o", out, dir + "/cmp.json", "earlier=" + dir + "/r10.json"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{">parley<", ">hub<", ">earlier<"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the plot lacks %q", want)
		}
	}
	// parley's two R=100 runs are one point, the hub has two, earlier one; two panels.
	if n := bytes.Count(svg, []byte("<circle")); n != 8 {
		t.Errorf("%d points drawn, want 8", n)
	}
	if err := plotMain([]string{"-o", out}, io.Discard); err == nil {
		t.Error("a plot of nothing did not fail")
	}
}
