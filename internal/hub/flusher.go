package hub

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
)

// Flushers. A send queue whose FrameWriter can write without blocking (a
// TryFrameWriter: a TCP socket) is not given a writer goroutine of its own each time
// frames wait. It joins the list of one of a few shared flushers, which takes each
// queue in turn, hands its waiting frames to the writer and writes them if the socket
// takes them all at once, then puts the queue back at the end of the list while more
// keep coming. So a connection's frames wait while the flusher writes the others, and
// frames produced meanwhile (an ack, the person's own message, the other person's)
// leave in one write, the way a group commit shares one commit; and no goroutine is
// started or ended per write.
//
// A flusher never waits on a connection: a socket that does not take the whole batch
// at once (a slow reader, a full buffer), or a connection busy with another write, is
// given a goroutine of its own (SendQueue.finish) that writes with the deadline, as
// every queue's writer did before, and drains the queue; the next frames after that
// join a flusher again. A flusher runs only while queues wait, so an idle server
// keeps none.

// A flusher is one goroutine among the thousands of the connections' readers, and
// the scheduler gives it no more of a processor than any of them: at R=1000 on two
// cores its passes over the list took up to 65 ms, and a queue waited its turn from
// 1 to 65 ms (median about 14), so a message's wait for its write was a lottery on
// where its queue stood in the list. So the readers help (FlushOverdue): after each
// frame it handled, a connection's reader gives their turn to up to helpTurns queues
// that have waited over helpAfter, oldest first. Queues younger than that still
// gather frames for the flusher, which takes the list from its head in chunks, as
// the readers do, and each queue's wait is bounded by about helpAfter while readers
// run.

// flusher is one shared writer goroutine and its list of queues.
type flusher struct {
	mu      sync.Mutex
	list    []*SendQueue // queues waiting their turn, the oldest at head
	head    int
	pushed  uint64 // queues ever put on the list
	taken   uint64 // queues ever taken off it
	running bool
	// oldest is when the queue at head was listed, 0 while the list is empty (set
	// under mu): FlushOverdue reads it without the lock, so a reader takes the lock
	// after a frame only when a queue is overdue.
	oldest atomic.Int64
}

// Turns the readers give (FlushOverdue) and the flusher's chunk.
const (
	helpAfter  = 3 * time.Millisecond // a queue waiting longer is overdue
	helpTurns  = 2                    // overdue queues a reader writes per frame
	flushChunk = 64                   // queues the flusher takes off the list at once
)

// flushers are the shared flushers, one per two processors: on a machine of two, one
// flusher writes while the other processor reads and stores, and the more queues
// wait their turn, the more frames each write carries.
var flushers = make([]flusher, max(1, runtime.GOMAXPROCS(0)/2))

// nextFlusher spreads queues over the flushers.
var nextFlusher atomic.Uint32

// push puts q at the end of f's list, starting f if it is not running. q.mu is held
// (startWriter) or q was just written (turn).
func (f *flusher) push(q *SendQueue) {
	now := chat.Mono() // never 0: flusher.oldest's "empty"
	f.mu.Lock()
	q.listedAt = now
	if f.head == len(f.list) {
		f.oldest.Store(now)
	}
	f.list = append(f.list, q)
	f.pushed++
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.run()
	}
}

// take moves up to n queues from the head of the list to into. f.mu is held.
func (f *flusher) take(n int, into []*SendQueue) []*SendQueue {
	n = min(n, len(f.list)-f.head)
	into = append(into, f.list[f.head:f.head+n]...)
	clear(f.list[f.head : f.head+n])
	f.head += n
	f.taken += uint64(n)
	switch {
	case f.head == len(f.list):
		f.list, f.head = f.list[:0], 0
		f.oldest.Store(0)
		return into
	case f.head >= flushChunk && 2*f.head >= len(f.list): // keep the slice from creeping
		k := copy(f.list, f.list[f.head:])
		clear(f.list[k:])
		f.list, f.head = f.list[:k], 0
	}
	f.oldest.Store(f.list[f.head].listedAt)
	return into
}

// FlushOverdue gives their turn, on the calling goroutine, to up to helpTurns queues
// that have waited on a flusher's list for over helpAfter before now (chat.Mono),
// oldest first. A connection's reader calls it after each frame it handled, with the
// clock it read for the frame; it holds no lock then.
func FlushOverdue(now int64) {
	for i := range flushers {
		if f := &flushers[i]; f.oldest.Load() != 0 {
			f.overdue(now)
		}
	}
}

// overdue gives their turn to up to helpTurns of f's queues listed before now-helpAfter.
func (f *flusher) overdue(now int64) {
	if oldest := f.oldest.Load(); oldest == 0 || now-oldest <= int64(helpAfter) {
		return // nothing listed, or nothing overdue yet
	}
	var buf [helpTurns]*SendQueue
	f.mu.Lock()
	n := 0
	for n < helpTurns && f.head+n < len(f.list) && now-f.list[f.head+n].listedAt > int64(helpAfter) {
		n++
	}
	qs := f.take(n, buf[:0])
	f.mu.Unlock()
	for _, q := range qs {
		f.turn(q)
	}
}

// run gives each queue on the list its turn, oldest first, flushChunk at a time,
// until the list is empty. Before each pass over what is listed, it lets the
// goroutines already running queue their frames (gather).
func (f *flusher) run() {
	var qs []*SendQueue
	var passEnd uint64
	for {
		f.mu.Lock()
		if f.taken >= passEnd {
			f.mu.Unlock()
			f.gather()
			f.mu.Lock()
			passEnd = f.pushed
		}
		if f.head == len(f.list) {
			f.running = false
			f.mu.Unlock()
			return
		}
		qs = f.take(flushChunk, qs[:0])
		f.mu.Unlock()
		for i, q := range qs {
			qs[i] = nil
			f.turn(q)
		}
	}
}

// gather lets the goroutines already running queue their frames before a pass
// (chat.Gather), so each write carries what they queue.
func (f *flusher) gather() { chat.Gather(f.waiting, maxGather) }

// maxGather bounds the yields before a pass, as the SQLite writer's.
const maxGather = 4

// waiting is how many queues wait their turn.
func (f *flusher) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.list) - f.head
}

// turn writes what waits in q if the socket takes it at once; otherwise q gets a
// goroutine of its own for it. A queue that was written goes back on the list: the
// frames that arrive before its next turn go together.
func (f *flusher) turn(q *SendQueue) {
	if !q.batch() {
		q.wg.Done() // empty, held or closed: the writer is stopped
		return
	}
	done, err := q.try.TryFlush()
	switch {
	case err != nil:
		q.failWrite(err)
		q.wg.Done()
	case !done:
		go q.finish()
	default:
		f.push(q)
	}
}
