package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metric names read from the server's /metrics.
const (
	metricRSS         = "process_resident_memory_bytes"
	metricHeapInuse   = "go_memstats_heap_inuse_bytes"
	metricStackInuse  = "go_memstats_stack_inuse_bytes"
	metricGoroutines  = "go_goroutines"
	metricConnections = "parley_connections"
	metricCPU         = "process_cpu_seconds_total"
)

// MemorySample is the server's memory and connection count at one instant, from /metrics.
type MemorySample struct {
	RSS         float64 `json:"rss_bytes"`
	HeapInuse   float64 `json:"heap_inuse_bytes"`
	StackInuse  float64 `json:"stack_inuse_bytes"`
	Goroutines  float64 `json:"goroutines"`
	Connections float64 `json:"connections"`
}

// IdleResult is what an idle run measured: server memory growth per held connection,
// and a fresh chat's numbers before and while the connections are held.
type IdleResult struct {
	Conns             int          `json:"conns_asked"`
	Connected         int          `json:"connected"`
	ConnectSec        float64      `json:"connect_s"`
	Before            MemorySample `json:"before"`
	After             MemorySample `json:"after"`
	MetricsError      string       `json:"metrics_error,omitempty"`
	BytesPerConn      float64      `json:"bytes_per_conn"`       // resident memory growth / connections
	HeapBytesPerConn  float64      `json:"heap_bytes_per_conn"`  // Go heap in use growth / connections
	StackBytesPerConn float64      `json:"stack_bytes_per_conn"` // goroutine stacks growth / connections
	GoroutinesPerConn float64      `json:"goroutines_per_conn"`
	Baseline          *Result      `json:"chat_before,omitempty"`
	Loaded            *Result      `json:"chat_holding,omitempty"`
}

// runIdle holds o.Conns joined connections and measures what they cost the server.
func runIdle(ctx context.Context, o Options, stderr io.Writer) (*Result, error) {
	res := &Result{Mode: ModeIdle, URL: o.URL, RunID: o.RunID, StartedAt: time.Now(),
		Idle: &IdleResult{Conns: o.Conns}}
	idle := res.Idle
	if o.IdleRooms > 0 {
		c, err := runChat(ctx, freshChat(o), o.RunID+"p", stderr)
		if err != nil {
			return nil, fmt.Errorf("fresh chat before holding connections: %w", err)
		}
		idle.Baseline = c
	}
	s, err := newSite(o.URL, o.Proto, o.Parallel)
	if err != nil {
		return nil, err
	}
	defer s.close()
	sleepCtx(ctx, o.Settle)
	before, merr := serverMemory(ctx, s, o.ServerPIDs)
	hold := o
	hold.Rooms = (o.Conns + 1) / 2
	r := &chatRun{o: hold, runID: o.RunID + "i", site: s, peer: s, cnt: newCounters(), readers: true}
	r.readCtx, r.stopRd = context.WithCancel(context.Background())
	defer r.shutdown()
	t0 := time.Now()
	if err := r.connectAll(ctx, stderr); err != nil {
		return nil, err
	}
	idle.ConnectSec = time.Since(t0).Seconds()
	idle.Connected = 2 * len(r.rooms)
	res.Rooms, res.RoomsAsked, res.Clients = len(r.rooms), hold.Rooms, idle.Connected
	sleepCtx(ctx, o.Settle)
	after, merr2 := serverMemory(ctx, s, o.ServerPIDs)
	idle.setMemory(before, after, firstErr(merr, merr2))
	if o.IdleRooms > 0 && ctx.Err() == nil {
		c, err := runChat(ctx, freshChat(o), o.RunID+"h", stderr)
		if err != nil {
			return nil, fmt.Errorf("fresh chat while holding connections: %w", err)
		}
		idle.Loaded = c
	}
	res.Errors, res.Reconnects = r.cnt.errorsCopy(), r.cnt.reconnects.Load()
	return res, ctx.Err()
}

// freshChat is the small chat run beside the held connections.
func freshChat(o Options) Options {
	c := o
	c.Mode, c.Rooms, c.Duration, c.Warmup = ModeChat, o.IdleRooms, o.IdleChat, time.Second
	return c
}

func (r *IdleResult) setMemory(before, after MemorySample, err error) {
	r.Before, r.After = before, after
	if err != nil {
		r.MetricsError = err.Error()
		return
	}
	if n := float64(r.Connected); n > 0 {
		r.BytesPerConn = (after.RSS - before.RSS) / n
		r.HeapBytesPerConn = (after.HeapInuse - before.HeapInuse) / n
		r.StackBytesPerConn = (after.StackInuse - before.StackInuse) / n
		r.GoroutinesPerConn = (after.Goroutines - before.Goroutines) / n
	}
}

// describe is the idle run's memory line under the table.
func (r *IdleResult) describe() string {
	if r.MetricsError != "" {
		return fmt.Sprintf("held %d/%d connections (connected in %.1fs); server memory unknown: %s",
			r.Connected, r.Conns, r.ConnectSec, r.MetricsError)
	}
	return fmt.Sprintf("held %d/%d connections (connected in %.1fs): server RSS %s -> %s (%s/conn), heap in use %s -> %s (%s/conn), stacks %s -> %s (%s/conn), goroutines %.0f -> %.0f (%.2f/conn), parley_connections %.0f\n"+
		"(per-connection RSS is only meaningful against a freshly started server: Go keeps memory it once used)",
		r.Connected, r.Conns, r.ConnectSec,
		formatBytes(r.Before.RSS), formatBytes(r.After.RSS), formatBytes(r.BytesPerConn),
		formatBytes(r.Before.HeapInuse), formatBytes(r.After.HeapInuse), formatBytes(r.HeapBytesPerConn),
		formatBytes(r.Before.StackInuse), formatBytes(r.After.StackInuse), formatBytes(r.StackBytesPerConn),
		r.Before.Goroutines, r.After.Goroutines, r.GoroutinesPerConn, r.After.Connections)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// scrapeMetrics reads the named metrics from the server's GET /metrics.
func scrapeMetrics(ctx context.Context, s *site, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.origin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body, names...)
}

// serverMemory reads the server's memory from /proc when its process ids are known
// (resident memory only), else from its /metrics.
func serverMemory(ctx context.Context, s *site, pids []int) (MemorySample, error) {
	if len(pids) == 0 {
		return scrapeMemory(ctx, s)
	}
	rss, err := procRSS(pids)
	return MemorySample{RSS: rss}, err
}

// scrapeMemory reads the server's memory figures from GET /metrics.
func scrapeMemory(ctx context.Context, s *site) (MemorySample, error) {
	v, err := scrapeMetrics(ctx, s, metricRSS, metricHeapInuse, metricStackInuse, metricGoroutines, metricConnections)
	if err != nil {
		return MemorySample{}, err
	}
	if _, ok := v[metricRSS]; !ok {
		return MemorySample{}, fmt.Errorf("GET /metrics: no %s", metricRSS)
	}
	return MemorySample{RSS: v[metricRSS], HeapInuse: v[metricHeapInuse], StackInuse: v[metricStackInuse],
		Goroutines: v[metricGoroutines], Connections: v[metricConnections]}, nil
}

// parseMetrics reads the Prometheus text format and returns the values of the named
// unlabelled metrics that are present (labelled series are summed under their name).
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := splitSample(line)
		if !ok || !want[name] {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		out[name] += f
	}
	return out, sc.Err()
}

// splitSample splits `name{labels} value [timestamp]` into name and value.
func splitSample(line string) (name, value string, ok bool) {
	end := strings.IndexAny(line, "{ ")
	if end < 0 {
		return "", "", false
	}
	name, rest := line[:end], line[end:]
	if rest[0] == '{' {
		close := strings.LastIndexByte(rest, '}')
		if close < 0 {
			return "", "", false
		}
		rest = rest[close+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", "", false
	}
	return name, fields[0], true
}
