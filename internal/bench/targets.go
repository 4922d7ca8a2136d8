package bench

import "fmt"

// Target is one of Parley's performance goals (docs/BENCHMARKS.md), checked against a run so that the
// report says whether it was met and, if not, by how much.
type Target struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Met  bool    `json:"met"`
	Gap  string  `json:"gap,omitempty"` // how far from the goal, when missed
}

// Parley's performance targets (docs/BENCHMARKS.md) on the embedded defaults (2 cores, generator on the same cores).
const (
	targetR100Deliveries   = 87000
	targetR100P99          = 20
	targetR1000Deliveries  = 55000
	targetR1000P99         = 150
	targetIdleBytesPerConn = 16 << 10
	targetIdleConns        = 10000
)

// targets lists the goals that apply to r: throughput and p99 at R=100 and R=1000,
// memory per connection at 10,000 idle connections, and no loss anywhere.
func (r *Result) targets() []Target {
	var ts []Target
	switch {
	case r.Idle == nil && r.RoomsAsked == 100:
		ts = append(ts, atLeast("R=100 deliveries/s", r.DeliveriesPerSec, targetR100Deliveries),
			atMost("R=100 p99 ms", r.Latency.P99, targetR100P99))
	case r.Idle == nil && r.RoomsAsked == 1000:
		ts = append(ts, atLeast("R=1000 deliveries/s", r.DeliveriesPerSec, targetR1000Deliveries),
			atMost("R=1000 p99 ms", r.Latency.P99, targetR1000P99))
	case r.Idle != nil && r.Idle.Conns >= targetIdleConns && r.Idle.MetricsError == "":
		ts = append(ts, atMost("idle server bytes/conn", r.Idle.BytesPerConn, targetIdleBytesPerConn))
	}
	t := r.allTallies()
	lost := float64(t.Lost + t.Duplicated + t.SeqGaps + t.SeqDuplicates)
	return append(ts, atMost("lost+duplicated", lost, 0))
}

func atLeast(name string, got, want float64) Target {
	t := Target{Name: name, Want: fmt.Sprintf(">= %.0f", want), Got: got, Met: got >= want}
	if !t.Met {
		t.Gap = fmt.Sprintf("missed by %.0f (%.0f%% of the target)", want-got, 100*got/want)
	}
	return t
}

func atMost(name string, got, want float64) Target {
	t := Target{Name: name, Want: fmt.Sprintf("<= %.0f", want), Got: got, Met: got <= want}
	if !t.Met {
		if want > 0 {
			t.Gap = fmt.Sprintf("missed by %.1f (%.1fx the target)", got-want, got/want)
		} else {
			t.Gap = fmt.Sprintf("missed by %.0f", got)
		}
	}
	return t
}

// describe is the target's line in the text report.
func (t Target) describe() string {
	verdict := "met"
	if !t.Met {
		verdict = t.Gap
	}
	return fmt.Sprintf("target %s %s: got %.1f, %s", t.Name, t.Want, t.Got, verdict)
}
