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

// FrameWriter is a connection's side of its SendQueue. The queue's writer hands it
// every frame that is waiting (Add) and then has them written (Flush), so frames that
// wait together, such as an ack and the sender's own message, leave in one write.
type FrameWriter interface {
	// Add appends frame to the batch being built and reports whether the batch is
	// full, in which case it is flushed before more frames are added. It is called
	// with the queue locked: it must only copy, never block or call the queue.
	Add(frame []byte) (full bool)
	// Flush writes the batch and empties it. It may block, and should have a deadline.
	Flush() error
}

// TryFrameWriter is a FrameWriter that can also write without waiting; its queue's
// frames are then written by the shared flushers (flusher.go).
type TryFrameWriter interface {
	FrameWriter
	// TryFlush writes the batch if the connection takes all of it now, without
	// waiting, and reports whether it did. When it did not (the connection's other
	// writes hold it, or its socket is full) the batch, or what is left of it, waits
	// for Flush, which must be the next call.
	TryFlush() (bool, error)
}

// SendQueue is a connection's bounded queue of encoded frames. Its writer (a shared
// flusher for a TCP connection, flusher.go; otherwise, or while the socket is full, a
// goroutine of its own) runs only while frames are waiting, so an idle connection
// holds no writer goroutine. Frames are written in order, as many as are waiting in
// one batch.
//
// Two kinds of frames share the queue. Frames the server sends on its own (messages,
// presence: Send) are bounded by limit, and a connection that lets limit of them pile
// up is closed. Frames that answer the client's own frames (acks, refusals: Reply) never
// close it: once replyLimit of them wait unwritten, Reply waits for the writer, and
// the caller (the connection's reader) stops reading the client, so TCP slows the
// client down instead.
type SendQueue struct {
	w   FrameWriter
	try TryFrameWriter // w, if it can write without waiting; nil otherwise
	f   *flusher       // the flusher that writes for it, with try
	// listedAt is when it was last put on its flusher's list (chat.Mono; under the
	// flusher's mu).
	listedAt int64
	fail     func(err error)

	mu         sync.Mutex
	room       sync.Cond // signalled when replies are written or the queue closes
	ring       []queued  // grows by doubling; dropped past idleRing when drained
	head, n    int
	replies    int // replies among the n waiting frames
	limit      int
	replyLimit int
	writing    bool
	held       bool // Hold: frames wait for Release instead of starting the writer
	closed     bool
	wg         sync.WaitGroup
}

// queued is one waiting frame; reply marks an answer to the client (Reply).
type queued struct {
	frame []byte
	reply bool
}

var _ Sender = (*SendQueue)(nil)

// NewSendQueue returns a queue of at most limit frames written through w. fail is
// called once, without blocking, when the queue overflows (with ErrSlow) or a write
// fails; it should close the connection.
func NewSendQueue(limit int, w FrameWriter, fail func(err error)) *SendQueue {
	q := new(SendQueue)
	q.Init(limit, w, fail)
	return q
}

// Init sets up a zero SendQueue as NewSendQueue does, for a queue kept inside the
// connection's own struct (one allocation, and one object less to reach per frame).
// It must not be copied after.
func (q *SendQueue) Init(limit int, w FrameWriter, fail func(err error)) {
	if limit < 1 {
		limit = 1
	}
	q.w, q.fail, q.limit, q.replyLimit = w, fail, limit, max(1, limit/4)
	q.room.L = &q.mu
	if try, ok := w.(TryFrameWriter); ok {
		q.try = try
		q.f = &flushers[nextFlusher.Add(1)%uint32(len(flushers))]
	}
}

// Send queues a frame the server sends on its own, without blocking. When limit such
// frames wait already, the queue closes and reports ErrSlow.
func (q *SendQueue) Send(frame []byte) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if q.n-q.replies >= q.limit {
		q.closed = true
		q.mu.Unlock()
		q.room.Broadcast()
		q.fail(ErrSlow)
		return false
	}
	q.push(queued{frame: frame})
	q.mu.Unlock()
	return true
}

// Reply queues a frame that answers the client (an ack, a refusal). It never closes
// the queue for being full: while replyLimit replies wait unwritten it blocks until
// the writer has written some (a write is bounded by the FrameWriter's deadline, and
// a failed one closes the queue). It reports false once the queue is closed. Only the
// connection's reader calls it, so a client that does not read its replies is not
// read either. Under Hold it does not wait (Hold waited already).
func (q *SendQueue) Reply(frame []byte) bool {
	q.mu.Lock()
	for !q.closed && !q.held && q.replies >= q.replyLimit {
		q.room.Wait()
	}
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.replies++
	q.push(queued{frame: frame, reply: true})
	q.mu.Unlock()
	return true
}

// push appends f and starts the writer. q.mu must be held.
func (q *SendQueue) push(f queued) {
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)%len(q.ring)] = f
	q.n++
	q.startWriter()
}

// Hold makes frames sent from now on wait until Release, so that frames produced
// together (an ack and the message it acknowledges) are written together. Hold only
// around work that takes microseconds: it delays every frame of the connection. Like
// Reply, it first waits while replyLimit replies wait unwritten; only the reader calls it.
func (q *SendQueue) Hold() {
	q.mu.Lock()
	for !q.closed && q.replies >= q.replyLimit {
		q.room.Wait()
	}
	q.held = true
	q.mu.Unlock()
}

// Release ends a Hold and starts writing what waits.
func (q *SendQueue) Release() {
	q.mu.Lock()
	q.held = false
	if !q.closed && q.n > 0 {
		q.startWriter()
	}
	q.mu.Unlock()
}

// startWriter starts the writer unless it runs or the queue is held: the queue's
// flusher, or a goroutine of its own. q.mu must be held.
func (q *SendQueue) startWriter() {
	if q.writing || q.held {
		return
	}
	q.writing = true
	q.wg.Add(1)
	if q.f != nil {
		q.f.push(q)
		return
	}
	go q.run()
}

// grow doubles the ring, keeping the frames in order. Send and Reply bound what it
// holds to about limit+replyLimit.
func (q *SendQueue) grow() {
	size := max(2*len(q.ring), 4)
	ring := make([]queued, size)
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring, q.head = ring, 0
}

// idleRing is the ring an empty queue keeps: enough for the few frames of a quiet
// moment (an ack and a message or two) without a new allocation.
const idleRing = 4

// shrink drops a ring grown by a burst once the queue is empty, so a connection that
// once fell behind does not keep up to limit slots (8 KB at 256) while it idles.
func (q *SendQueue) shrink() {
	if len(q.ring) > idleRing {
		q.ring, q.head = nil, 0
	}
}

// run writes queued frames until the queue is empty, held or closed: each round hands
// every waiting frame to the FrameWriter and flushes them in one write.
func (q *SendQueue) run() {
	defer q.wg.Done()
	for q.batch() {
		if err := q.w.Flush(); err != nil {
			q.failWrite(err)
			return
		}
	}
}

// finish writes, with the FrameWriter's deadline, the batch a flusher could not
// write at once, then drains the queue as run does.
func (q *SendQueue) finish() {
	if err := q.w.Flush(); err != nil {
		q.failWrite(err)
		q.wg.Done()
		return
	}
	q.run()
}

// batch adds the waiting frames to the FrameWriter's batch (until it is full) and
// reports whether it added any; if not, it marks the writer stopped. Frames are added
// under the lock, so a Hold or Close never cuts a batch in two: Add only copies.
func (q *SendQueue) batch() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.held || q.n == 0 {
		q.writing = false
		if q.n == 0 {
			q.shrink()
		}
		return false
	}
	replies := q.replies
	for q.n > 0 {
		f := q.ring[q.head]
		q.ring[q.head] = queued{}
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		if f.reply {
			q.replies--
		}
		if q.w.Add(f.frame) {
			break
		}
	}
	if replies >= q.replyLimit {
		q.room.Broadcast() // the reader may be waiting for room to reply
	}
	return true
}

// failWrite closes the queue after a failed write and reports it, unless the queue
// was closed already (the connection is closing, and its writes fail for that).
func (q *SendQueue) failWrite(err error) {
	q.mu.Lock()
	already := q.closed
	q.closed, q.writing, q.n, q.replies = true, false, 0, 0
	q.mu.Unlock()
	q.room.Broadcast()
	if !already {
		q.fail(err)
	}
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
	q.n, q.replies = 0, 0
	q.ring, q.head = nil, 0
	q.mu.Unlock()
	q.room.Broadcast()
}

// Wait waits for the writer goroutine to exit. Call it after Close.
func (q *SendQueue) Wait() { q.wg.Wait() }
