package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// received builds a ledger from the message numbers and seqs a client got.
func received(own, peer []int, seqs ...int64) *ledger {
	l := &ledger{}
	for _, n := range own {
		l.ownMessage(n)
	}
	for _, n := range peer {
		l.peerMessage(n)
	}
	for _, s := range seqs {
		l.seq(s)
	}
	return l
}

func TestTallyRoom(t *testing.T) {
	tests := []struct {
		name string
		a, b sender
		want tally
	}{
		{
			name: "OK",
			a:    sender{sent: 2, got: received([]int{1, 2}, []int{1}, 1, 2, 3)},
			b:    sender{sent: 1, got: received([]int{1}, []int{1, 2}, 1, 2, 3)},
		},
		{
			name: "LostAtPeer",
			a:    sender{sent: 2, got: received([]int{1, 2}, nil, 1, 2)},
			b:    sender{sent: 0, got: received(nil, []int{1}, 1)},
			want: tally{Lost: 1},
		},
		{
			name: "LostEverywhere",
			a:    sender{sent: 1, got: received(nil, nil)},
			b:    sender{sent: 0, got: received(nil, nil)},
			want: tally{Lost: 2},
		},
		{
			name: "LostAfterAck",
			a:    sender{sent: 2, acked: map[int]bool{1: true, 2: true}, got: received([]int{1}, nil, 1)},
			b:    sender{sent: 0, got: received(nil, []int{1}, 1)},
			want: tally{Lost: 2, LostAcked: 2},
		},
		{
			name: "Duplicated",
			a:    sender{sent: 1, got: received([]int{1, 1}, nil, 1, 1)},
			b:    sender{sent: 0, got: received(nil, []int{1, 1, 1}, 1)},
			want: tally{Duplicated: 3, SeqDuplicates: 1},
		},
		{
			name: "RefusedNotExpected",
			a:    sender{sent: 2, refused: map[int]bool{2: true}, got: received([]int{1}, nil, 1)},
			b:    sender{sent: 0, got: received(nil, []int{1}, 1)},
		},
		{
			name: "SeqGap",
			a:    sender{sent: 0, got: received(nil, nil, 1, 3)},
			b:    sender{sent: 0, got: received(nil, nil, 1, 2, 3)},
			want: tally{SeqGaps: 1},
		},
		{
			name: "Foreign",
			a:    sender{sent: 0, got: &ledger{foreign: 2}},
			b:    sender{sent: 0, got: &ledger{}},
			want: tally{Foreign: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tallyRoom(tt.a, tt.b); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(Options) bool
		wantErr bool
	}{
		{"Defaults", nil, func(o Options) bool {
			return o.Mode == ModeChat && o.Rooms == 100 && o.Duration == 20*time.Second &&
				o.Warmup == 3*time.Second && o.Size == 32 && o.URL == DefaultURL && o.RunID != ""
		}, false},
		{"ChatFlags", []string{"chat", "--rooms", "10", "--duration", "2s", "--size", "64", "--json"}, func(o Options) bool {
			return o.Rooms == 10 && o.Duration == 2*time.Second && o.Size == 64 && o.JSON
		}, false},
		{"IdleWord", []string{"idle", "--conns", "500"}, func(o Options) bool {
			return o.Mode == ModeIdle && o.Conns == 500
		}, false},
		{"ModeFlag", []string{"--mode", "idle"}, func(o Options) bool { return o.Mode == ModeIdle }, false},
		{"TrailingSlash", []string{"--url", "http://127.0.0.1:9/"}, func(o Options) bool {
			return o.URL == "http://127.0.0.1:9"
		}, false},
		{"PeerURL", []string{"--peer-url", "http://127.0.0.1:8081/"}, func(o Options) bool {
			return o.PeerURL == "http://127.0.0.1:8081"
		}, false},
		{"BadPeerURL", []string{"--peer-url", "ftp://x"}, nil, true},
		{"UnknownMode", []string{"storm"}, nil, true},
		{"BadURL", []string{"--url", "127.0.0.1:8080"}, nil, true},
		{"ZeroRooms", []string{"--rooms", "0"}, nil, true},
		{"TooBig", []string{"--size", "5000"}, nil, true},
		{"UnknownFlag", []string{"--nope"}, nil, true},
		{"ExtraArg", []string{"chat", "--rooms", "1", "more"}, nil, true},
		{"BadRunID", []string{"--run-id", "a b"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !tt.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
	if _, err := ParseFlags([]string{"-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), "--rooms") && !strings.Contains(err.Error(), "-rooms") {
		t.Errorf("-h: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	h := hdrhistogram.New(histMin, histMax, histDigits)
	for us := int64(1); us <= 1000; us++ {
		_ = h.RecordValue(us * 10) // 10 µs … 10 ms
	}
	s := summarize(h)
	near := func(got, want float64) bool { return got > want*0.99 && got < want*1.01 }
	if s.Count != 1000 || !near(s.P50, 5) || !near(s.P95, 9.5) || !near(s.P99, 9.9) || !near(s.Max, 10) {
		t.Errorf("summary %+v", s)
	}
	if z := summarize(hdrhistogram.New(histMin, histMax, histDigits)); z != (LatencySummary{}) {
		t.Errorf("empty summary %+v", z)
	}
}

func TestLatenciesMerge(t *testing.T) {
	l := newLatencies()
	for i := range 100 {
		l.record(i, time.Now(), time.Duration(i+1)*time.Millisecond)
	}
	l.record(0, time.Now(), time.Hour) // clamped to the histogram's range, not dropped
	h := l.merged()
	if h.TotalCount() != 101 || h.Max() < histMax*99/100 {
		t.Errorf("count %d max %d", h.TotalCount(), h.Max())
	}
}

// TestLatencyLogInSendOrder: with the log asked for, every recorded message is in the
// file, in the order they were sent, whichever client's shard holds it.
func TestLatencyLogInSendOrder(t *testing.T) {
	l := newLatencies()
	l.keep = true
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 50 {
		client := (i * 7) % 40
		l.record(client, t0.Add(time.Duration(50-i)*time.Millisecond), time.Duration(i+1)*time.Millisecond)
	}
	path := filepath.Join(t.TempDir(), "lat.csv")
	if err := l.writeFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 51 || strings.Join(rows[0], ",") != "sent_unix_us,latency_us,client" {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	for k, r := range rows[1:] {
		i := 49 - k // the last recorded was sent first
		want := []string{strconv.FormatInt(t0.Add(time.Duration(50-i)*time.Millisecond).UnixMicro(), 10),
			strconv.Itoa((i + 1) * 1000), strconv.Itoa((i * 7) % 40)}
		if strings.Join(r, ",") != strings.Join(want, ",") {
			t.Fatalf("row %d = %v, want %v", k+1, r, want)
		}
	}
}

func TestSendFrameIsJSON(t *testing.T) {
	var f struct{ Type, ID, Text string }
	b := sendFrame(nil, "abc-1-a-", 7, messageText(40))
	if err := json.Unmarshal(b, &f); err != nil || f.Type != "send" || f.ID != "abc-1-a-7" || len(f.Text) != 40 {
		t.Errorf("%s: %+v %v", b, f, err)
	}
}

func TestIDNumber(t *testing.T) {
	tests := []struct {
		name, id string
		want     int
		ok       bool
	}{
		{"OK", "r1-3-a-42", 42, true},
		{"OtherPrefix", "r1-3-b-42", 0, false},
		{"NotNumber", "r1-3-a-x", 0, false},
		{"Zero", "r1-3-a-0", 0, false},
		{"PrefixOnly", "r1-3-a-", 0, false},
		{"Sign", "r1-3-a-+4", 0, false},
		{"Huge", "r1-3-a-99999999999999999999", 0, false},
		{"Leading zero", "r1-3-a-012", 12, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := idNumber([]byte(tt.id), "r1-3-a-")
			if n != tt.want || ok != tt.ok {
				t.Errorf("got %d %v", n, ok)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.4576e+07
go_memstats_heap_inuse_bytes 1.2e+06
go_goroutines 12
parley_refusals_total{reason="room_full"} 2
parley_refusals_total{reason="a } b"} 3 1700000000
other_metric 5
`
	got, err := parseMetrics(strings.NewReader(text), metricRSS, metricHeapInuse, metricGoroutines, "parley_refusals_total", "absent")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{metricRSS: 24576000, metricHeapInuse: 1.2e6, metricGoroutines: 12, "parley_refusals_total": 5}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestIdleMemory(t *testing.T) {
	r := &IdleResult{Connected: 1000}
	r.setMemory(MemorySample{RSS: 10 << 20, Goroutines: 10}, MemorySample{RSS: 10<<20 + 16<<20, Goroutines: 1010}, nil)
	if r.BytesPerConn != 16*1024*1024/1000.0 || r.GoroutinesPerConn != 1 {
		t.Errorf("%+v", r)
	}
	r.setMemory(MemorySample{}, MemorySample{}, errors.New("GET /metrics: 404 Not Found"))
	if !strings.Contains(r.describe(), "404") {
		t.Errorf("describe: %s", r.describe())
	}
}

func TestTableAndIntegrity(t *testing.T) {
	res := &Result{Mode: ModeChat, Rooms: 100, DeliveriesPerSec: 12345, SendsPerSec: 6000,
		Latency:   LatencySummary{P50: 1, P95: 2, P99: 3.5, Max: 9},
		Errors:    map[string]int64{"timeout": 1, "rate_limited": 3},
		ServerCPU: 1.05, ServerCPUPerDelivery: 5.5, BenchCPU: 0.78, BenchCPUPerDelivery: 4.1, MachineIdle: 0.17}
	var b bytes.Buffer
	if err := res.print(&b, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deliveries/s", "p99 ms", "12345", "3.50", "rate_limited=3 timeout=1",
		"cpu: server 1.05 cores (5.5 µs per delivery), load generator 0.78 cores (4.1 µs per delivery), idle 0.17 cores"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if err := res.integrityError(); err != nil {
		t.Errorf("clean run: %v", err)
	}
	res.Lost = 2
	if err := res.integrityError(); !errors.Is(err, ErrIntegrity) {
		t.Errorf("lost run: %v", err)
	}
	res.Lost = 0
	res.Idle = &IdleResult{Loaded: &Result{tally: tally{Duplicated: 1}}}
	if err := res.integrityError(); !errors.Is(err, ErrIntegrity) {
		t.Errorf("duplicate in idle's chat: %v", err)
	}
	b.Reset()
	if err := res.print(&b, true); err != nil || !json.Valid(b.Bytes()) || !strings.Contains(b.String(), `"deliveries_per_s": 12345`) {
		t.Errorf("json: %v\n%s", err, b.String())
	}
}

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		name, in string
		want     jsonFrame
	}{
		{"Message", `{"type":"message","seq":42,"id":"c-1","from":"a@x.org","to":"b@x.org","text":"he said \"hi\"\\","kind":"chat","at":"2026-11-27T12:00:00.123456Z"}`,
			jsonFrame{Type: "message", Seq: 42, ID: "c-1", From: "a@x.org"}},
		{"Welcome", `{"type":"welcome","session":"s1","room":"r","role":"host","you":"a@x.org","peer":null,"status":"inprogress","last_seq":41}`,
			jsonFrame{Type: "welcome", Session: "s1"}},
		{"Error", ` { "type" : "error" , "code" : "room_full", "message": "full" } `, jsonFrame{Type: "error", Code: "room_full"}},
		{"Ack", `{"type":"ack","id":"c-1","seq":7}`, jsonFrame{Type: "ack", ID: "c-1", Seq: 7}},
		{"Presence", `{"type":"presence","email":"b@x.org","online":true}`, jsonFrame{Type: "presence"}},
		{"Nested", `{"type":"x","extra":{"a":[1,2]},"id":"q"}`, jsonFrame{Type: "x", ID: "q"}},
		{"EscapedKept", `{"type":"message","id":"a\u002db","seq":1}`, jsonFrame{Type: "message", ID: "a-b", Seq: 1}},
		{"Empty", `{}`, jsonFrame{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f frame
			var viaJSON jsonFrame
			if err := decodeFrame([]byte(tt.in), &f); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.in), &viaJSON); err != nil {
				t.Fatal(err)
			}
			if got := f.strings(); got != tt.want || got != viaJSON {
				t.Errorf("got %+v, want %+v (encoding/json: %+v)", got, tt.want, viaJSON)
			}
		})
	}
	var f frame
	if err := decodeFrame([]byte(`{"type":`), &f); err == nil {
		t.Error("truncated frame decoded")
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	msg := []byte(`{"type":"message","seq":42,"id":"abc123-17-a-9123","from":"bench-abc123-17-a@bench.test","to":"bench-abc123-17-b@bench.test","text":"abcdefghijklmnopqrstuvwxyz012345","kind":"chat","at":"2026-11-27T12:00:00.123456Z"}`)
	var f frame
	b.ReportAllocs()
	for b.Loop() {
		_ = decodeFrame(msg, &f)
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		name string
		in   float64
		want string
	}{
		{"Bytes", 512, "512 B"},
		{"KiB", 16 * 1024, "16.0 KiB"},
		{"MiB", 3 << 20, "3.0 MiB"},
		{"Negative", -47923, "-46.8 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatBytes(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name string
		res  Result
		want []string // describe() of each target
	}{
		{"R100Missed", Result{RoomsAsked: 100, DeliveriesPerSec: 43500, Latency: LatencySummary{P99: 30}}, []string{
			"target R=100 deliveries/s >= 87000: got 43500.0, missed by 43500 (50% of the target)",
			"target R=100 p99 ms <= 20: got 30.0, missed by 10.0 (1.5x the target)",
			"target lost+duplicated <= 0: got 0.0, met",
		}},
		{"R1000Met", Result{RoomsAsked: 1000, DeliveriesPerSec: 60000, Latency: LatencySummary{P99: 100}}, []string{
			"target R=1000 deliveries/s >= 55000: got 60000.0, met",
			"target R=1000 p99 ms <= 150: got 100.0, met",
			"target lost+duplicated <= 0: got 0.0, met",
		}},
		{"R10Lost", Result{RoomsAsked: 10, tally: tally{Lost: 2}}, []string{
			"target lost+duplicated <= 0: got 2.0, missed by 2",
		}},
		{"Idle", Result{Idle: &IdleResult{Conns: 10000, BytesPerConn: 20480}}, []string{
			"target idle server bytes/conn <= 16384: got 20480.0, missed by 4096.0 (1.2x the target)",
			"target lost+duplicated <= 0: got 0.0, met",
		}},
		{"IdleNoMetrics", Result{Idle: &IdleResult{Conns: 10000, MetricsError: "404"}}, []string{
			"target lost+duplicated <= 0: got 0.0, met",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.res.targets()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d targets %+v", len(got), got)
			}
			for i, tg := range got {
				if tg.describe() != tt.want[i] {
					t.Errorf("got %q\nwant %q", tg.describe(), tt.want[i])
				}
			}
		})
	}
}

// FuzzDecodeFrame: wherever encoding/json accepts a frame, the scanner reads the same
// fields from it.
func FuzzDecodeFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"message","seq":42,"id":"c-1","from":"a@x.org","to":"b@x.org","text":"hi \"x\"","kind":"chat","at":"2026-11-27T12:00:00Z"}`,
		`{"type":"welcome","session":"s1","peer":null,"last_seq":41}`,
		`{"type":"error","code":"room_full","message":"full"}`,
		`{"type":"ack","id":"c-1","seq":7}`,
		`{"Type":"x","SEQ":3}`,
		`{"a":{"b":[1,{"c":2}]},"type":"y"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want jsonFrame
		var f frame
		if json.Unmarshal(data, &want) != nil {
			return
		}
		if err := decodeFrame(data, &f); err != nil || f.strings() != want {
			got := f.strings()
			t.Errorf("%q: got %+v (%v), encoding/json %+v", data, got, err, want)
		}
	})
}
