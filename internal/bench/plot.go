package bench

// `parley bench plot` draws docs/bench.svg from `parley bench --json` and `parley
// bench compare --json` results: chat deliveries per second and p99 latency against
// the number of rooms, one line per series. It writes plain SVG with no plotting
// dependency.
//
// Usage:
//
//	parley bench plot [-o docs/bench.svg] [-refs] [label=]result.json...
//
// A file of `parley bench --json` results (one or several, one after another) goes
// into the series "parley", or the label given; a `parley bench compare --json` file
// gives one series per server, each point the mean of its runs at that room count.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// point is one chat run: rooms, deliveries/s and p99 in ms.
type point struct {
	Rooms      float64
	Deliveries float64
	P99        float64
}

// series is a named line on both panels.
type series struct {
	Name   string
	Points []point
	Dashed bool
}

// plotReferences are numbers for other servers measured on another day on a 2-core
// machine (docs/BENCHMARKS.md), drawn dashed with -refs. A comparison measured in the
// same sitting says more: plot a `parley bench compare --json` file instead.
var plotReferences = []series{
	{Name: "Centrifugo v6.9, earlier machine (no storage)", Dashed: true,
		Points: []point{{100, 87000, 14}, {1000, 55000, 115}}},
	{Name: "bare Go hub, earlier machine (no storage)", Dashed: true,
		Points: []point{{100, 110000, 12}, {1000, 88000, 79}}},
	{Name: "Django Channels design, earlier machine (midpoints)", Dashed: true,
		Points: []point{{100, 1450, 435}, {1000, 1275, 3350}}},
}

var plotPalette = []string{"#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#57606a"}

// plotMain runs `parley bench plot` with the arguments after it.
func plotMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parley bench plot", flag.ContinueOnError)
	fs.SetOutput(stdout)
	out := fs.String("o", "docs/bench.svg", "SVG file to write")
	refs := fs.Bool("refs", false, "also draw reference servers measured on another day (dashed)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	all, err := readSeries(fs.Args())
	if err == nil && len(all) == 0 {
		err = errors.New("no chat results given: parley bench plot [-o out.svg] [label=]result.json...")
	}
	if err != nil {
		return err
	}
	if *refs {
		all = append(all, plotReferences...)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	err = render(f, all)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSeries reads each [label=]file argument into its series.
func readSeries(args []string) ([]series, error) {
	byName := map[string]*series{}
	var order []string
	for _, arg := range args {
		name, path := "parley", arg
		if l, p, ok := strings.Cut(arg, "="); ok {
			name, path = l, p
		}
		pts, perServer, err := readSeriesFile(path)
		if err != nil {
			return nil, err
		}
		add := func(name string, pts []point) {
			s := byName[name]
			if s == nil {
				s = &series{Name: name}
				byName[name] = s
				order = append(order, name)
			}
			s.Points = append(s.Points, pts...)
		}
		if len(pts) > 0 {
			add(name, pts)
		}
		for _, s := range perServer {
			add(s.Name, s.Points)
		}
	}
	out := make([]series, 0, len(order))
	for _, n := range order {
		s := *byName[n]
		sort.Slice(s.Points, func(i, j int) bool { return s.Points[i].Rooms < s.Points[j].Rooms })
		out = append(out, s)
	}
	return out, nil
}

// plotResult is the part of bench's JSON the plot needs.
type plotResult struct {
	Mode             string  `json:"mode"`
	Rooms            float64 `json:"rooms"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	Latency          struct {
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
}

// readSeriesFile reads one file: a comparison gives a series per server (named by the
// server); bench results give points of one series (ok false: the caller names it).
func readSeriesFile(path string) (pts []point, perServer []series, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	for {
		var r struct {
			plotResult
			Runs []struct {
				Server string      `json:"server"`
				Rooms  int         `json:"rooms"`
				Result *plotResult `json:"result"`
			} `json:"runs"`
		}
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return pts, perServer, nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if r.Mode == "chat" && r.Rooms > 0 {
			pts = append(pts, point{r.Rooms, r.DeliveriesPerSec, r.Latency.P99})
		}
		// A comparison: the mean of each server's runs at each room count.
		type key struct {
			server string
			rooms  int
		}
		sums, counts := map[key]point{}, map[key]float64{}
		var servers []string
		for _, run := range r.Runs {
			if run.Result == nil || run.Rooms == 0 || run.Result.Mode != "chat" {
				continue
			}
			k := key{run.Server, run.Rooms}
			if !slices.Contains(servers, run.Server) {
				servers = append(servers, run.Server)
			}
			p := sums[k]
			sums[k] = point{float64(run.Rooms), p.Deliveries + run.Result.DeliveriesPerSec, p.P99 + run.Result.Latency.P99}
			counts[k]++
		}
		for _, name := range servers {
			s := series{Name: name}
			for k, p := range sums {
				if k.server == name {
					s.Points = append(s.Points, point{p.Rooms, p.Deliveries / counts[k], p.P99 / counts[k]})
				}
			}
			perServer = append(perServer, s)
		}
	}
}

// panel is one chart: its place on the canvas and its axes.
type panel struct {
	x0, y0, w, h  float64 // plot area
	xmin, xmax    float64 // log10 of rooms
	ymin, ymax    float64 // value range (log10 when logY)
	logY          bool
	title, ylabel string
	value         func(point) float64
	yTicks        []float64
	yFormat       func(float64) string
}

func (p *panel) px(rooms float64) float64 {
	return p.x0 + (math.Log10(rooms)-p.xmin)/(p.xmax-p.xmin)*p.w
}

func (p *panel) py(v float64) float64 {
	if p.logY {
		v = math.Log10(math.Max(v, 1e-9))
	}
	return p.y0 + p.h - (v-p.ymin)/(p.ymax-p.ymin)*p.h
}

func render(w io.Writer, all []series) error {
	maxD, maxP, minP := 1.0, 1.0, math.Inf(1)
	for _, s := range all {
		for _, pt := range s.Points {
			maxD = math.Max(maxD, pt.Deliveries)
			maxP = math.Max(maxP, pt.P99)
			if pt.P99 > 0 {
				minP = math.Min(minP, pt.P99)
			}
		}
	}
	if math.IsInf(minP, 1) {
		minP = 1
	}
	dStep := niceStep(maxD / 5)
	dTop := math.Ceil(maxD/dStep) * dStep
	left := &panel{x0: 80, y0: 50, w: 360, h: 280, xmin: math.Log10(5), xmax: math.Log10(2000),
		ymin: 0, ymax: dTop, title: "deliveries per second (higher is better)", ylabel: "deliveries/s",
		value: func(p point) float64 { return p.Deliveries }, yFormat: thousands}
	for v := 0.0; v <= dTop+1e-9; v += dStep {
		left.yTicks = append(left.yTicks, v)
	}
	lo, hi := math.Floor(math.Log10(minP)), math.Ceil(math.Log10(maxP))
	if hi <= lo {
		hi = lo + 1
	}
	right := &panel{x0: 560, y0: 50, w: 360, h: 280, xmin: left.xmin, xmax: left.xmax,
		ymin: lo, ymax: hi, logY: true, title: "p99 latency, ms (lower is better)", ylabel: "p99 ms",
		value: func(p point) float64 { return p.P99 }, yFormat: func(v float64) string { return trimFloat(v) }}
	for e := lo; e <= hi; e++ {
		right.yTicks = append(right.yTicks, math.Pow(10, e))
	}
	height := 400 + 18*float64(len(all))
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="960" height="%.0f" viewBox="0 0 960 %.0f" font-family="sans-serif" font-size="12">`+"\n", height, height)
	fmt.Fprintf(w, `<rect width="960" height="%.0f" fill="white"/>`+"\n", height)
	fmt.Fprintln(w, `<text x="480" y="22" text-anchor="middle" font-size="15">parley bench: R rooms × 2 clients, closed loop</text>`)
	for _, p := range []*panel{left, right} {
		drawAxes(w, p)
		for i, s := range all {
			drawSeries(w, p, s, plotPalette[i%len(plotPalette)])
		}
	}
	for i, s := range all {
		y := 400 + 18*float64(i)
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6,4"`
		}
		fmt.Fprintf(w, `<line x1="80" y1="%.0f" x2="110" y2="%.0f" stroke="%s" stroke-width="2"%s/>`+"\n", y-4, y-4, plotPalette[i%len(plotPalette)], dash)
		fmt.Fprintf(w, `<text x="118" y="%.0f">%s</text>`+"\n", y, escape(s.Name))
	}
	_, err := fmt.Fprintln(w, "</svg>")
	return err
}

func drawAxes(w io.Writer, p *panel) {
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="middle" font-size="13">%s</text>`+"\n", p.x0+p.w/2, p.y0-12, escape(p.title))
	fmt.Fprintf(w, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", p.x0, p.y0, p.w, p.h)
	for _, r := range []float64{10, 100, 1000} {
		x := p.px(r)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`+"\n", x, p.y0, x, p.y0+p.h)
		fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x, p.y0+p.h+16, thousands(r))
	}
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="middle">rooms (R, log scale)</text>`+"\n", p.x0+p.w/2, p.y0+p.h+34)
	for _, v := range p.yTicks {
		y := p.py(v)
		fmt.Fprintf(w, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/>`+"\n", p.x0, y, p.x0+p.w, y)
		fmt.Fprintf(w, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", p.x0-6, y+4, p.yFormat(v))
	}
}

func drawSeries(w io.Writer, p *panel, s series, color string) {
	if len(s.Points) == 0 {
		return
	}
	dash := ""
	if s.Dashed {
		dash = ` stroke-dasharray="6,4"`
	}
	coords := make([]string, len(s.Points))
	for i, pt := range s.Points {
		coords[i] = fmt.Sprintf("%.1f,%.1f", p.px(pt.Rooms), p.py(p.value(pt)))
	}
	fmt.Fprintf(w, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(coords, " "), color, dash)
	for _, c := range coords {
		x, y, _ := strings.Cut(c, ",")
		fmt.Fprintf(w, `<circle cx="%s" cy="%s" r="3.5" fill="%s"/>`+"\n", x, y, color)
	}
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// thousands prints 87000 as "87,000".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func trimFloat(v float64) string {
	if v >= 1 {
		return thousands(v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
