package hub

import (
	"errors"
	"sync"
)

// ErrSlow is reported for a connection whose send queue overflowed: it could not keep
// up, so it is closed rather than waited for. It reconnects and replays what it missed.
var ErrSlow = errors.New("connection too slow to keep up; send queue full")

// Sender is where the hub puts a connection's frames. Send must not block.
type Sender interface {
	// Send queues an encoded frame. It returns false when the connection is closed or
	// cannot keep up (and is being closed); the frame is then dropped.
	Send(frame []byte) bool
}

// SendQueue is a connection's bounded queue of encoded frames. Its writer goroutine
// runs only while frames are waiting and exits when the queue is empty, so an idle
// connection holds no writer goroutine. Frames are written one at a time, in order.
type SendQueue struct {
	write func(frame []byte) error
	fail  func(err error)

	mu      sync.Mutex
	ring    [][]byte // grows by doubling up to limit; dropped past idleRing when drained
	head, n int
	limit   int
	writing bool
	closed  bool
	wg      sync.WaitGroup
}

var _ Sender = (*SendQueue)(nil)

// NewSendQueue returns a queue of at most limit frames. write sends one frame to the
// connection (it may block, and should have a timeout). fail is called once, without
// blocking, when the queue overflows (with ErrSlow) or a write fails; it should close
// the connection.
func NewSendQueue(limit int, write func(frame []byte) error, fail func(err error)) *SendQueue {
	if limit < 1 {
		limit = 1
	}
	return &SendQueue{write: write, fail: fail, limit: limit}
}

// Send queues frame without blocking. A full queue closes the queue and reports ErrSlow.
func (q *SendQueue) Send(frame []byte) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if q.n == q.limit {
		q.closed = true
		q.mu.Unlock()
		q.fail(ErrSlow)
		return false
	}
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)%len(q.ring)] = frame
	q.n++
	if !q.writing {
		q.writing = true
		q.wg.Add(1)
		go q.run()
	}
	q.mu.Unlock()
	return true
}

// grow doubles the ring (to at most limit), keeping the frames in order.
func (q *SendQueue) grow() {
	size := min(max(2*len(q.ring), 4), q.limit)
	ring := make([][]byte, size)
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring, q.head = ring, 0
}

// idleRing is the ring an empty queue keeps: enough for the few frames of a quiet
// moment (an ack and a message or two) without a new allocation.
const idleRing = 4

// shrink drops a ring grown by a burst once the queue is empty, so a connection that
// once fell behind does not keep up to limit slots (6 KB at 256) while it idles.
func (q *SendQueue) shrink() {
	if len(q.ring) > idleRing {
		q.ring, q.head = nil, 0
	}
}

// run writes queued frames until the queue is empty or closed.
func (q *SendQueue) run() {
	defer q.wg.Done()
	for {
		frame, ok := q.pop()
		if !ok {
			return
		}
		if err := q.write(frame); err != nil {
			q.mu.Lock()
			already := q.closed
			q.closed, q.writing, q.n = true, false, 0
			q.mu.Unlock()
			if !already {
				q.fail(err)
			}
			return
		}
	}
}

// pop takes the oldest frame, or marks the writer stopped when there is none.
func (q *SendQueue) pop() ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.n == 0 {
		q.writing = false
		q.shrink()
		return nil, false
	}
	frame := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	return frame, true
}

// Len returns the number of frames waiting.
func (q *SendQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Close stops the queue: later Sends fail and waiting frames are dropped. A write in
// progress finishes (close the connection to cut it short).
func (q *SendQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.n = 0
	q.ring, q.head = nil, 0
	q.mu.Unlock()
}

// Wait waits for the writer goroutine to exit. Call it after Close.
func (q *SendQueue) Wait() { q.wg.Wait() }
