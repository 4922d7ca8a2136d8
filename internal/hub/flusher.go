package hub

import (
	"runtime"
	"sync"
	"sync/atomic"

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

// flusher is one shared writer goroutine and its list of queues.
type flusher struct {
	mu      sync.Mutex
	list    []*SendQueue // queues waiting their turn
	spare   []*SendQueue // the list being worked through, reused
	running bool
}

// flushers are the shared flushers, one per two processors: on a machine of two, one
// flusher writes while the other processor reads and stores, and the more queues
// wait their turn, the more frames each write carries.
var flushers = make([]flusher, max(1, runtime.GOMAXPROCS(0)/2))

// nextFlusher spreads queues over the flushers.
var nextFlusher atomic.Uint32

// push puts q at the end of f's list, starting f if it is not running. q.mu is held
// (startWriter) or q is the flusher's own (requeue).
func (f *flusher) push(q *SendQueue) {
	f.mu.Lock()
	f.list = append(f.list, q)
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.run()
	}
}

// run takes the list and gives each queue a turn, until the list is empty.
func (f *flusher) run() {
	for {
		f.gather()
		f.mu.Lock()
		if len(f.list) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		qs := f.list
		f.list, f.spare = f.spare[:0], qs
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
	return len(f.list)
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
