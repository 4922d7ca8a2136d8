package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// room is the two clients of one chat.
type room struct{ a, b *client }

// chatRun is one closed-loop run in progress.
type chatRun struct {
	o       Options
	runID   string
	site    *site
	peer    *site // where each room's second client goes: another replica, or site
	cnt     *counters
	rooms   []room
	readers bool           // start each client's reading goroutine once connected (idle mode)
	lat     *latencies     // chat: the measured messages' latencies
	wg      sync.WaitGroup // every client goroutine started
	readCtx context.Context
	stopRd  context.CancelFunc
}

// runChat performs the closed loop of o with rooms named after runID.
func runChat(ctx context.Context, o Options, runID string, stderr io.Writer) (*Result, error) {
	s, err := newSite(o.URL, o.Proto, o.Parallel)
	if err != nil {
		return nil, err
	}
	defer s.close()
	r := &chatRun{o: o, runID: runID, site: s, peer: s, cnt: newCounters()}
	if o.PeerURL != "" {
		if r.peer, err = newSite(o.PeerURL, o.Proto, o.Parallel); err != nil {
			return nil, err
		}
		defer r.peer.close()
	}
	r.readCtx, r.stopRd = context.WithCancel(context.Background())
	defer r.shutdown()
	if err := r.connectAll(ctx, stderr); err != nil {
		return nil, err
	}
	res := r.loop(ctx, stderr)
	if o.LatencyLog != "" {
		if err := r.lat.writeFile(o.LatencyLog); err != nil {
			return res, fmt.Errorf("latency log: %w", err)
		}
	}
	return res, ctx.Err()
}

// connectAll signs in and connects every room's two clients, Parallel rooms at a time.
// Rooms that fail are left out of the run and counted as errors; the run fails only
// when no room could be set up.
func (r *chatRun) connectAll(ctx context.Context, stderr io.Writer) error {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		sem     = make(chan struct{}, max(1, r.o.Parallel/2))
		lastErr error
		done    int
	)
	for i := 0; i < r.o.Rooms && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rm, err := r.connectRoom(ctx, i)
			mu.Lock()
			defer mu.Unlock()
			done++
			if err != nil {
				r.cnt.addError(errorCode(err))
				lastErr = err
				return
			}
			r.rooms = append(r.rooms, rm)
			if !r.o.Quiet && done%50 == 0 {
				fmt.Fprintf(stderr, "\rconnecting: %d/%d rooms   ", done, r.o.Rooms)
			}
		}()
	}
	wg.Wait()
	if !r.o.Quiet {
		fmt.Fprintf(stderr, "\rconnected: %d/%d rooms      \n", len(r.rooms), r.o.Rooms)
	}
	if len(r.rooms) == 0 {
		if lastErr == nil {
			lastErr = ctx.Err()
		}
		return fmt.Errorf("no room could be set up: %w", lastErr)
	}
	return nil
}

// connectRoom signs in the host, then the participant, of room i.
func (r *chatRun) connectRoom(ctx context.Context, i int) (room, error) {
	rm := room{
		a: newClient(r.site, r.cnt, r.runID, i, "a"),
		b: newClient(r.peer, r.cnt, r.runID, i, "b"),
	}
	if err := rm.a.connect(ctx); err != nil {
		rm.a.close()
		return rm, err
	}
	r.startReader(rm.a)
	if err := rm.b.connect(ctx); err != nil {
		rm.a.close()
		rm.b.close()
		return rm, err
	}
	r.startReader(rm.b)
	return rm, nil
}

// startReader starts c's goroutine reading until it is closed, when the run holds
// connections (idle mode): the server's pings must be answered. In a chat the closed
// loop starts the goroutine instead.
func (r *chatRun) startReader(c *client) {
	if !r.readers {
		return
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); c.readUntilClosed(r.readCtx) }()
}

// snapshot is the run-wide counters at one instant.
type snapshot struct {
	at                time.Time
	sends, deliveries int64
	acks              int64
	serverCPU         float64 // the server's process_cpu_seconds_total; -1 when unknown
	serverSys         float64 // of it, kernel time (--server-pid only); -1 when unknown
	benchCPU          float64 // this process's CPU seconds
	idle              float64 // the machine's idle CPU seconds (machineIdleSeconds); -1 when unknown
}

// snap reads the counters, then the CPU time used so far by the server (from its
// /metrics) and by the generator: the two share the cores, so how much of them each
// got explains a number, and CPU per message compares runs on a busy and a quiet machine.
func (r *chatRun) snap(ctx context.Context) snapshot {
	t := r.cnt.totals()
	s := snapshot{at: time.Now(), sends: t.sends, deliveries: t.deliveries, acks: t.acks,
		serverCPU: -1, serverSys: -1, benchCPU: selfCPUSeconds(), idle: machineIdleSeconds()}
	if len(r.o.ServerPIDs) > 0 {
		s.serverCPU, s.serverSys = procCPUTimes(r.o.ServerPIDs)
		return s
	}
	sites := []*site{r.site}
	if r.peer != r.site {
		sites = append(sites, r.peer)
	}
	for _, st := range sites {
		v, err := scrapeMetrics(ctx, st, metricCPU)
		cpu, ok := v[metricCPU]
		if err != nil || !ok {
			s.serverCPU = -1
			break
		}
		s.serverCPU = max(s.serverCPU, 0) + cpu
	}
	return s
}

// loop runs the closed loop through warmup and the measured duration, drains, and
// tallies. Each client's one goroutine sends and reads (see loop.runChat); when the
// run's time including the drain is up, or ctx ends, every client is aborted.
func (r *chatRun) loop(ctx context.Context, stderr io.Writer) *Result {
	start := time.Now()
	measureFrom := start.Add(r.o.Warmup)
	runEnd := measureFrom.Add(r.o.Duration)
	sendCtx, cancelSend := context.WithDeadline(ctx, runEnd.Add(r.o.Drain))
	defer cancelSend()
	r.lat = newLatencies()
	r.lat.keep = r.o.LatencyLog != ""
	l := &loop{text: messageText(r.o.Size), measureFrom: measureFrom,
		resendAfter: r.o.ResendAfter, lat: r.lat}
	var sending sync.WaitGroup
	for i, rm := range r.rooms {
		for j, c := range []*client{rm.a, rm.b} {
			sending.Add(1)
			r.wg.Add(1)
			go func() { defer r.wg.Done(); l.runChat(sendCtx, c, 2*i+j, &sending) }()
		}
	}
	stopAbort := context.AfterFunc(sendCtx, func() {
		for _, rm := range r.rooms {
			rm.a.abort()
			rm.b.abort()
		}
	})
	defer stopAbort()
	prog := newProgress(r.cnt, stderr, r.o.Quiet, start, measureFrom, runEnd)
	defer prog.stop()
	sleepUntil(ctx, measureFrom)
	s0 := r.snap(ctx)
	sleepUntil(ctx, runEnd)
	s1 := r.snap(ctx)
	l.stop.Store(true)
	sending.Wait()
	r.awaitDrain(sendCtx)
	prog.stop()
	r.shutdown()
	return r.result(s0, s1, l.lat)
}

// awaitDrain waits until every client has received every message sent in its room,
// or ctx ends.
func (r *chatRun) awaitDrain(ctx context.Context) {
	for ctx.Err() == nil {
		if r.drained() {
			return
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
}

func (r *chatRun) drained() bool {
	for _, rm := range r.rooms {
		for _, p := range [][2]*client{{rm.a, rm.b}, {rm.b, rm.a}} {
			c, peer := p[0], p[1]
			if c.maxOwn.Load() < int64(lastExpected(c)) || c.maxPeer.Load() < int64(lastExpected(peer)) {
				return false
			}
		}
	}
	return true
}

// lastExpected is the highest message number of c that should arrive everywhere.
func lastExpected(c *client) int {
	n := c.sent
	for n > 0 && c.refused[n] {
		n--
	}
	return n
}

// shutdown closes every connection and waits for the client goroutines. It is safe
// to repeat.
func (r *chatRun) shutdown() {
	for _, rm := range r.rooms {
		rm.a.close()
		rm.b.close()
	}
	r.stopRd()
	r.wg.Wait()
}

// result turns the counters between s0 and s1, the latencies and the ledgers into
// the report.
func (r *chatRun) result(s0, s1 snapshot, lat *latencies) *Result {
	secs := s1.at.Sub(s0.at).Seconds()
	res := &Result{
		Mode: ModeChat, URL: r.o.URL, PeerURL: r.o.PeerURL, RunID: r.runID, StartedAt: s0.at.Add(-r.o.Warmup), Rooms: len(r.rooms), RoomsAsked: r.o.Rooms,
		Clients: 2 * len(r.rooms), Size: r.o.Size, WarmupSec: r.o.Warmup.Seconds(), DurationSec: secs,
		Sends: s1.sends - s0.sends, Deliveries: s1.deliveries - s0.deliveries, Acks: s1.acks - s0.acks,
		Errors: r.cnt.errorsCopy(), Reconnects: r.cnt.reconnects.Load(),
		Latency: summarize(lat.merged()),
	}
	if secs > 0 {
		res.SendsPerSec = float64(res.Sends) / secs
		res.DeliveriesPerSec = float64(res.Deliveries) / secs
		res.BenchCPU = (s1.benchCPU - s0.benchCPU) / secs
		if s0.idle >= 0 && s1.idle >= 0 {
			res.MachineIdle = (s1.idle - s0.idle) / secs
		}
		if res.Deliveries > 0 {
			res.BenchCPUPerDelivery = (s1.benchCPU - s0.benchCPU) / float64(res.Deliveries) * 1e6
		}
		if s0.serverCPU >= 0 && s1.serverCPU >= 0 {
			res.ServerCPU = (s1.serverCPU - s0.serverCPU) / secs
			if res.Deliveries > 0 {
				res.ServerCPUPerDelivery = (s1.serverCPU - s0.serverCPU) / float64(res.Deliveries) * 1e6
				if s0.serverSys >= 0 && s1.serverSys >= 0 {
					res.ServerSysPerDelivery = (s1.serverSys - s0.serverSys) / float64(res.Deliveries) * 1e6
				}
			}
		}
	}
	for _, rm := range r.rooms {
		res.tally.add(tallyRoom(
			sender{sent: rm.a.sent, refused: rm.a.refused, acked: rm.a.acked, got: &rm.a.got},
			sender{sent: rm.b.sent, refused: rm.b.refused, acked: rm.b.acked, got: &rm.b.got}))
	}
	return res
}

func sleepUntil(ctx context.Context, t time.Time) { sleepCtx(ctx, time.Until(t)) }
