package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is one run's outcome, printed as a table or, with --json, as this struct.
// `parley bench plot` reads the JSON, so field names are part of its contract.
type Result struct {
	Mode             string           `json:"mode"`
	URL              string           `json:"url"`
	PeerURL          string           `json:"peer_url,omitempty"` // each room's second client's replica
	RunID            string           `json:"run_id"`
	StartedAt        time.Time        `json:"started_at"`
	Rooms            int              `json:"rooms"`       // rooms that took part
	RoomsAsked       int              `json:"rooms_asked"` // --rooms
	Clients          int              `json:"clients"`
	Size             int              `json:"size"`
	WarmupSec        float64          `json:"warmup_s"`
	DurationSec      float64          `json:"duration_s"` // measured window
	Sends            int64            `json:"sends"`      // messages first sent in the window
	Deliveries       int64            `json:"deliveries"` // message frames received in the window, all clients
	Acks             int64            `json:"acks"`
	SendsPerSec      float64          `json:"sends_per_s"`
	DeliveriesPerSec float64          `json:"deliveries_per_s"`
	Latency          LatencySummary   `json:"latency_ms"`
	Errors           map[string]int64 `json:"errors"`
	Reconnects       int64            `json:"reconnects"`
	// CPU the server (from its /metrics, both replicas with --peer-url; 0 when not
	// served) and the generator used in the window, in cores, and each one's CPU per
	// delivery in microseconds.
	ServerCPU            float64 `json:"server_cpu_cores"`
	BenchCPU             float64 `json:"bench_cpu_cores"`
	ServerCPUPerDelivery float64 `json:"server_cpu_us_per_delivery"`
	// ServerSysPerDelivery is the kernel's part of ServerCPUPerDelivery (socket and
	// disk work), known with --server-pid only.
	ServerSysPerDelivery float64 `json:"server_sys_cpu_us_per_delivery,omitempty"`
	BenchCPUPerDelivery  float64 `json:"bench_cpu_us_per_delivery"`
	// MachineIdle is how many of the machine's cores were idle in the window, on
	// average (Linux; 0 elsewhere).
	MachineIdle float64 `json:"machine_idle_cores,omitempty"`
	tally
	Idle    *IdleResult `json:"idle,omitempty"`
	Targets []Target    `json:"targets"`
	Machine Machine     `json:"machine"`
}

// LatencySummary is the latency distribution in milliseconds: send → own message back.
type LatencySummary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// summarize reads the quantiles of a histogram recorded in microseconds.
func summarize(h *hdrhistogram.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return LatencySummary{
		Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: ms(h.ValueAtQuantile(50)), P95: ms(h.ValueAtQuantile(95)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

// Machine describes where the load generator ran (the server's machine when both run
// on one host, as in docs/BENCHMARKS.md).
type Machine struct {
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	NumCPU    int    `json:"num_cpu"`
	CPUModel  string `json:"cpu_model,omitempty"`
	// LoadBefore is the 1-minute load average when the run started: the generator
	// and server share the cores, so anything else running skews every number.
	LoadBefore float64 `json:"load_avg_before"`
}

// loadAverage returns the 1-minute load average (0 where /proc/loadavg is missing).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

func describeMachine() Machine {
	m := Machine{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, NumCPU: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// integrityError reports lost or duplicated messages as an error wrapping ErrIntegrity.
func (r *Result) integrityError() error {
	t := r.allTallies()
	if t.Lost+t.Duplicated+t.SeqGaps+t.SeqDuplicates == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d lost (%d of them acknowledged by the server), %d duplicated, %d seq gaps, %d repeated seqs",
		ErrIntegrity, t.Lost, t.LostAcked, t.Duplicated, t.SeqGaps, t.SeqDuplicates)
}

// allTallies adds the tallies of the chats run inside an idle run.
func (r *Result) allTallies() tally {
	t := r.tally
	if r.Idle != nil {
		for _, c := range []*Result{r.Idle.Baseline, r.Idle.Loaded} {
			if c != nil {
				t.add(c.tally)
			}
		}
	}
	return t
}

func (r *Result) print(w io.Writer, asJSON bool) error {
	r.Targets = r.targets()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.writeTable(w)
}

// tableHeader is the column list of the text report.
const tableHeader = "mode\trooms/conns\tdeliveries/s\tsends/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tlost\tduplicated\tbytes/conn\t"

// writeTable prints the text report: one row per chat (an idle run has its memory row
// and the fresh chat before and while holding the connections), then the error codes.
func (r *Result) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, tableHeader)
	for _, row := range r.rows() {
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Idle != nil {
		fmt.Fprintln(w, r.Idle.describe())
	}
	if errs := formatErrors(r.Errors); errs != "" {
		fmt.Fprintln(w, "errors by code:", errs)
	}
	if r.Errors["rate_limited"] > 0 {
		fmt.Fprintln(w, "the server's per-connection rate limit refused sends (each resent after 50 ms), so this measured the limit;"+
			" for throughput, start the server with PARLEY_RATE=1000000 PARLEY_RATE_BURST=1000000 (docs/BENCHMARKS.md)")
	}
	if t := r.allTallies(); t.SeqGaps+t.SeqDuplicates+t.Foreign > 0 {
		fmt.Fprintf(w, "seq gaps: %d, repeated seqs: %d, foreign messages: %d\n", t.SeqGaps, t.SeqDuplicates, t.Foreign)
	}
	if r.Reconnects > 0 {
		fmt.Fprintf(w, "reconnects: %d\n", r.Reconnects)
	}
	if r.Idle == nil && (r.ServerCPU > 0 || r.BenchCPU > 0) {
		kernel := ""
		if r.ServerSysPerDelivery > 0 {
			kernel = fmt.Sprintf(", %.1f of them in the kernel", r.ServerSysPerDelivery)
		}
		idle := ""
		if r.MachineIdle > 0 {
			idle = fmt.Sprintf(", idle %.2f cores", r.MachineIdle)
		}
		fmt.Fprintf(w, "cpu: server %.2f cores (%.1f µs per delivery%s), load generator %.2f cores (%.1f µs per delivery)%s\n",
			r.ServerCPU, r.ServerCPUPerDelivery, kernel, r.BenchCPU, r.BenchCPUPerDelivery, idle)
	}
	for _, t := range r.Targets {
		fmt.Fprintln(w, t.describe())
	}
	if m := r.Machine; m.NumCPU > 0 && m.LoadBefore > float64(m.NumCPU)/2 {
		fmt.Fprintf(w, "warning: load average was %.1f on %d CPUs before the run; other work skews these numbers\n", m.LoadBefore, m.NumCPU)
	}
	return nil
}

func (r *Result) rows() []string {
	if r.Idle == nil {
		return []string{r.chatRow(ModeChat, fmt.Sprint(r.Rooms), "-")}
	}
	perConn := "n/a"
	if r.Idle.MetricsError == "" {
		perConn = formatBytes(r.Idle.BytesPerConn)
	}
	rows := []string{fmt.Sprintf("idle\t%d\t-\t-\t-\t-\t-\t-\t%d\t-\t-\t%s\t",
		r.Idle.Connected, sumErrors(r.Errors), perConn)}
	if c := r.Idle.Baseline; c != nil {
		rows = append(rows, c.chatRow("chat (before)", fmt.Sprint(c.Rooms), "-"))
	}
	if c := r.Idle.Loaded; c != nil {
		rows = append(rows, c.chatRow("chat (holding)", fmt.Sprint(c.Rooms), "-"))
	}
	return rows
}

func (r *Result) chatRow(mode, rooms, bytes string) string {
	l := r.Latency
	return fmt.Sprintf("%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%s\t",
		mode, rooms, r.DeliveriesPerSec, r.SendsPerSec, l.P50, l.P95, l.P99, l.Max,
		sumErrors(r.Errors), r.Lost, r.Duplicated, bytes)
}

func sumErrors(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// formatErrors lists error counts by code, largest first: "rate_limited=12 timeout=1".
func formatErrors(m map[string]int64) string {
	codes := make([]string, 0, len(m))
	for k := range m {
		codes = append(codes, k)
	}
	sort.Slice(codes, func(i, j int) bool {
		if m[codes[i]] != m[codes[j]] {
			return m[codes[i]] > m[codes[j]]
		}
		return codes[i] < codes[j]
	})
	parts := make([]string, len(codes))
	for i, k := range codes {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// formatBytes prints a byte count in binary units: "15.2 KiB".
func formatBytes(b float64) string {
	switch a := math.Abs(b); {
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
