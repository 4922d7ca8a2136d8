package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Acceptance ratios of the comparison (docs/BENCHMARKS.md), at R=100 and R=1000.
const (
	ratioVsCentrifugo = 1.0 // Parley's deliveries/s ≥ 1.0× Centrifugo's
	ratioVsHub        = 0.8 // ≥ 0.8× the bare hub's
	ratioP99VsHub     = 1.3 // Parley's p99 ≤ 1.3× the hub's
	moonshot          = 1.0 // every message stored, at the bare hub's throughput
)

// summary is the mean of one server's runs at one size.
type summary struct {
	server          string
	runs            int
	deliveries, p99 float64
	cpuPerDelivery  float64 // server µs per delivery; 0 when unknown
	sysPerDelivery  float64 // of it, in the kernel; 0 when unknown
	idleCores       float64 // the machine's cores left idle; 0 when unknown
	lost, dup       int64
	each            []float64 // deliveries/s of every run
	errors          int
}

func (r *CompareResult) summarize(rooms int) []summary {
	var out []summary
	for _, server := range r.Options.Servers {
		s := summary{server: server}
		var cpuRuns, idleRuns int
		for _, run := range r.Runs {
			if run.Server != server || run.Rooms != rooms {
				continue
			}
			if run.Result == nil || run.Error != "" {
				s.errors++
				continue
			}
			res := run.Result
			s.runs++
			s.each = append(s.each, res.DeliveriesPerSec)
			s.deliveries += res.DeliveriesPerSec
			s.p99 += res.Latency.P99
			if res.ServerCPUPerDelivery > 0 {
				s.cpuPerDelivery += res.ServerCPUPerDelivery
				s.sysPerDelivery += res.ServerSysPerDelivery
				cpuRuns++
			}
			if res.MachineIdle > 0 {
				s.idleCores += res.MachineIdle
				idleRuns++
			}
			t := res.allTallies()
			s.lost += t.Lost + t.SeqGaps
			s.dup += t.Duplicated + t.SeqDuplicates
		}
		if s.runs > 0 {
			s.deliveries /= float64(s.runs)
			s.p99 /= float64(s.runs)
		}
		if cpuRuns > 0 {
			s.cpuPerDelivery /= float64(cpuRuns)
			s.sysPerDelivery /= float64(cpuRuns)
		}
		if idleRuns > 0 {
			s.idleCores /= float64(idleRuns)
		}
		if s.runs+s.errors > 0 {
			out = append(out, s)
		}
	}
	return out
}

func find(ss []summary, server string) *summary {
	for i := range ss {
		if ss[i].server == server && ss[i].runs > 0 {
			return &ss[i]
		}
	}
	return nil
}

// writeReport prints the comparison: the conditions, then per room count each server's
// means and Parley's ratios against the others, then the idle runs.
func (r *CompareResult) writeReport(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nparley bench compare · %s–%s UTC · build %s · %s · %d CPUs (%s)\n",
		r.StartedAt.Format("2006-01-02 15:04"), r.EndedAt.Format("15:04"), r.Build, m.GoVersion, m.NumCPU, m.CPUModel)
	var loads []float64
	for _, run := range r.Runs {
		loads = append(loads, run.LoadBefore)
	}
	if len(loads) > 0 {
		slices.Sort(loads)
		fmt.Fprintf(w, "load average (1 min) before each run: min %.1f, median %.1f, max %.1f on %d CPUs",
			loads[0], loads[len(loads)/2], loads[len(loads)-1], m.NumCPU)
		if loads[len(loads)/2] > float64(m.NumCPU)/2 {
			fmt.Fprint(w, " — other work shared the cores: trust the ratios, not the absolute figures")
		}
		fmt.Fprintln(w)
	}
	o := r.Options
	fmt.Fprintf(w, "each row: mean of %d interleaved run(s) per server (%.0f s measured after %.0f s warmup), the same closed-loop generator on the same cores\n",
		o.Rounds, o.Duration, o.Warmup)
	for _, rooms := range o.Rooms {
		ss := r.summarize(rooms)
		fmt.Fprintf(w, "\nR=%d (%d rooms x 2 clients)\n", rooms, rooms)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "server\tdeliveries/s\tp99 ms\tserver µs/delivery\tof it kernel\tidle cores\tlost\tduplicated\teach run (deliveries/s)\t")
		for _, s := range ss {
			each := make([]string, len(s.each))
			for i, v := range s.each {
				each[i] = fmt.Sprintf("%.0f", v)
			}
			if s.errors > 0 {
				each = append(each, fmt.Sprintf("%d failed", s.errors))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.2f\t%d\t%d\t%s\t\n", s.server, s.deliveries, s.p99, s.cpuPerDelivery,
				s.sysPerDelivery, s.idleCores, s.lost, s.dup, strings.Join(each, " / "))
		}
		_ = tw.Flush()
		for _, line := range ratioLines(ss, rooms) {
			fmt.Fprintln(w, "  "+line)
		}
		if line := r.pairedLine(rooms); line != "" {
			fmt.Fprintln(w, "  "+line)
		}
	}
	if o.IdleConns > 0 {
		fmt.Fprintf(w, "\nidle %d connections: server resident memory growth per connection\n", o.IdleConns)
		for _, run := range r.Runs {
			if run.Rooms != 0 {
				continue
			}
			switch {
			case run.Error != "":
				fmt.Fprintf(w, "  %s: failed: %s\n", run.Server, run.Error)
			case run.Result != nil && run.Result.Idle != nil:
				id := run.Result.Idle
				verdict := ""
				if run.Server == ServerParley && id.Connected >= targetIdleConns {
					verdict = " (target ≤ 16.0 KiB: " + metOr(id.BytesPerConn <= targetIdleBytesPerConn, "missed") + ")"
				}
				fmt.Fprintf(w, "  %s: %s per connection, %d/%d connected in %.1f s%s\n", run.Server,
					formatBytes(id.BytesPerConn), id.Connected, id.Conns, id.ConnectSec, verdict)
			}
		}
	}
}

func metOr(ok bool, otherwise string) string {
	if ok {
		return "met"
	}
	return otherwise
}

// ratioLines says how Parley compares at one size: against Centrifugo and the bare
// hub with the acceptance targets (at R=100 and R=1000) and the moonshot, and each
// production shape against the embedded figure.
func ratioLines(ss []summary, rooms int) []string {
	p := find(ss, ServerParley)
	if p == nil {
		return nil
	}
	judged := rooms == 100 || rooms == 1000
	var out []string
	if c := find(ss, ServerCentrifugo); c != nil && c.deliveries > 0 {
		x := p.deliveries / c.deliveries
		line := fmt.Sprintf("parley / centrifugo: %.2f× deliveries/s, %.2f× p99%s", x, p.p99/c.p99, cpuRatio(p, c))
		if judged {
			line += fmt.Sprintf(" (target ≥ %.1f×: %s)", ratioVsCentrifugo, metOr(x >= ratioVsCentrifugo, "missed"))
		}
		out = append(out, line)
	}
	if h := find(ss, ServerHub); h != nil && h.deliveries > 0 && h.p99 > 0 {
		x, lat := p.deliveries/h.deliveries, p.p99/h.p99
		line := fmt.Sprintf("parley / bare hub: %.2f× deliveries/s, %.2f× p99%s", x, lat, cpuRatio(p, h))
		if judged {
			line += fmt.Sprintf(" (targets ≥ %.1f×: %s; p99 ≤ %.1f×: %s)", ratioVsHub, metOr(x >= ratioVsHub, "missed"),
				ratioP99VsHub, metOr(lat <= ratioP99VsHub, "missed"))
		}
		out = append(out, line)
		out = append(out, fmt.Sprintf("moonshot (every message stored at the bare hub's throughput, %.1f×): Parley at %.2f×, %s",
			moonshot, x, moonshotGap(x)))
	}
	if b := find(ss, ServerBase); b != nil && b.deliveries > 0 && b.p99 > 0 {
		out = append(out, fmt.Sprintf("parley / parley-base: %.2f× deliveries/s, %.2f× p99%s",
			p.deliveries/b.deliveries, p.p99/b.p99, cpuRatio(p, b)))
	}
	for _, shape := range []string{ServerMariaDB, ServerReplicas} {
		if s := find(ss, shape); s != nil && p.deliveries > 0 {
			out = append(out, fmt.Sprintf("%s / parley (embedded): %.2f× deliveries/s, %.2f× p99%s",
				shape, s.deliveries/p.deliveries, s.p99/p.p99, cpuRatio(s, p)))
		}
	}
	if p.lost+p.dup > 0 {
		out = append(out, fmt.Sprintf("parley LOST %d and DUPLICATED %d messages", p.lost, p.dup))
	} else if judged {
		out = append(out, "parley: 0 lost, 0 duplicated (target: met)")
	}
	return out
}

// cpuRatio is ", N× server CPU per delivery" of a against b, or "" when unknown: on a
// busy machine it varies less than throughput, which depends on the share of the
// cores each process got.
func cpuRatio(a, b *summary) string {
	if a.cpuPerDelivery <= 0 || b.cpuPerDelivery <= 0 {
		return ""
	}
	return fmt.Sprintf(", %.2f× server CPU per delivery", a.cpuPerDelivery/b.cpuPerDelivery)
}

func moonshotGap(x float64) string {
	if x >= moonshot {
		return "reached"
	}
	return fmt.Sprintf("%.0f%% short", 100*(moonshot-x)/moonshot)
}

// pairedLine compares parley with parley-base round by round at one size: the two
// ran minutes apart in each round, so their ratio within a round is steadier than the
// ratio of the means when the machine's speed drifts between rounds.
func (r *CompareResult) pairedLine(rooms int) string {
	byRound := map[int][2]*Result{}
	for _, run := range r.Runs {
		if run.Rooms != rooms || run.Result == nil || run.Error != "" {
			continue
		}
		pair := byRound[run.Round]
		switch run.Server {
		case ServerParley:
			pair[0] = run.Result
		case ServerBase:
			pair[1] = run.Result
		}
		byRound[run.Round] = pair
	}
	var ratios, p99s []float64
	for round := range r.Options.Rounds {
		pair := byRound[round]
		if pair[0] == nil || pair[1] == nil || pair[1].DeliveriesPerSec <= 0 || pair[1].Latency.P99 <= 0 {
			continue
		}
		ratios = append(ratios, pair[0].DeliveriesPerSec/pair[1].DeliveriesPerSec)
		p99s = append(p99s, pair[0].Latency.P99/pair[1].Latency.P99)
	}
	if len(ratios) == 0 {
		return ""
	}
	better := 0
	for _, x := range ratios {
		if x > 1 {
			better++
		}
	}
	return fmt.Sprintf("parley / parley-base, paired by round: %.2f× deliveries/s (%.2f–%.2f; more in %d of %d rounds), %.2f× p99 (%.2f–%.2f)",
		mean(ratios), slices.Min(ratios), slices.Max(ratios), better, len(ratios), mean(p99s), slices.Min(p99s), slices.Max(p99s))
}

func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}
