package hub

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSender counts frames; it never refuses one.
type countingSender struct{ n atomic.Int64 }

func (c *countingSender) Send([]byte) bool { c.n.Add(1); return true }

func TestSendQueueWritesInOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	q := NewSendQueue(1000, eachFrame(func(f []byte) error {
		mu.Lock()
		got = append(got, string(f))
		mu.Unlock()
		return nil
	}), func(error) { t.Error("unexpected fail") })
	for i := 0; i < 500; i++ {
		if !q.Send([]byte{byte(i)}) {
			t.Fatalf("Send %d refused", i)
		}
	}
	waitFor(t, "all frames", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 500 })
	for i, f := range got {
		if f != string([]byte{byte(i)}) {
			t.Fatalf("frame %d out of order", i)
		}
	}
	q.Close()
	q.Wait()
}

func TestSendQueueFullFailsOnce(t *testing.T) {
	block := make(chan struct{})
	var fails atomic.Int32
	var reason atomic.Value
	q := NewSendQueue(2, eachFrame(func([]byte) error { <-block; return nil }), func(err error) {
		fails.Add(1)
		reason.Store(err)
	})
	results := []bool{q.Send([]byte("1")), q.Send([]byte("2")), q.Send([]byte("3")), q.Send([]byte("4")), q.Send([]byte("5"))}
	// 1 is taken by the writer (or still queued), so at most 3 fit before overflow.
	if !results[0] || !results[1] || results[4] {
		t.Fatalf("Send results %v", results)
	}
	close(block)
	q.Wait()
	if fails.Load() != 1 || !errors.Is(reason.Load().(error), ErrSlow) {
		t.Fatalf("fail called %d times with %v", fails.Load(), reason.Load())
	}
}

func TestSendQueueWriteErrorFails(t *testing.T) {
	boom := errors.New("boom")
	failed := make(chan error, 2)
	q := NewSendQueue(4, eachFrame(func([]byte) error { return boom }), func(err error) { failed <- err })
	q.Send([]byte("x"))
	if err := <-failed; !errors.Is(err, boom) {
		t.Fatalf("fail(%v)", err)
	}
	q.Wait()
	if q.Send([]byte("y")) {
		t.Fatal("Send after a failed write accepted")
	}
}

func TestSendQueueNoIdleWriter(t *testing.T) {
	before := runtime.NumGoroutine()
	queues := make([]*SendQueue, 200)
	for i := range queues {
		queues[i] = NewSendQueue(4, eachFrame(func([]byte) error { return nil }), func(error) {})
		queues[i].Send([]byte("x"))
	}
	waitFor(t, "frames to be written", func() bool {
		for _, q := range queues {
			if q.Len() != 0 {
				return false
			}
		}
		return true
	})
	waitFor(t, "writers to exit", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func BenchmarkSendQueue(b *testing.B) {
	q := NewSendQueue(1<<20, eachFrame(func([]byte) error { return nil }), func(error) {})
	frame := []byte(`{"type":"message"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		q.Send(frame)
	}
	q.Close()
	q.Wait()
}

// BenchmarkSendQueueBurst is the closed loop's pattern: one frame arrives at an empty
// queue and is written before the next, so every frame starts a writer goroutine.
// Compare with BenchmarkGoroutineHandoff, the same hand-off to a goroutine that stays.
func BenchmarkSendQueueBurst(b *testing.B) {
	written := make(chan struct{})
	q := NewSendQueue(256, eachFrame(func([]byte) error { written <- struct{}{}; return nil }), func(error) {})
	frame := []byte(`{"type":"message"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		q.Send(frame)
		<-written
	}
	q.Close()
	q.Wait()
}

// BenchmarkGoroutineHandoff hands each frame to a long-lived writer goroutine through
// a channel: what a resident writer per connection would cost instead.
func BenchmarkGoroutineHandoff(b *testing.B) {
	frames, written := make(chan []byte, 1), make(chan struct{})
	go func() {
		for range frames {
			written <- struct{}{}
		}
	}()
	frame := []byte(`{"type":"message"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		frames <- frame
		<-written
	}
	close(frames)
}

// frameBatches is a FrameWriter that writes each frame of a batch through write and
// records how many frames every Flush wrote.
type frameBatches struct {
	write   func([]byte) error
	batch   [][]byte
	mu      sync.Mutex
	flushes []int
}

// eachFrame adapts a per-frame write function to a FrameWriter.
func eachFrame(write func([]byte) error) *frameBatches { return &frameBatches{write: write} }

func (w *frameBatches) Add(frame []byte) bool {
	w.batch = append(w.batch, frame)
	return false
}

func (w *frameBatches) Flush() error {
	w.mu.Lock()
	w.flushes = append(w.flushes, len(w.batch))
	w.mu.Unlock()
	defer func() { w.batch = w.batch[:0] }()
	for _, f := range w.batch {
		if err := w.write(f); err != nil {
			return err
		}
	}
	return nil
}

func (w *frameBatches) sizes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.flushes...)
}

// TestSendQueueBatchesWaitingFrames: frames that wait while a write is under way go
// out in the next Flush together, not one write each.
func TestSendQueueBatchesWaitingFrames(t *testing.T) {
	block := make(chan struct{})
	var n atomic.Int32
	w := eachFrame(func([]byte) error {
		if n.Add(1) == 1 {
			<-block
		}
		return nil
	})
	q := NewSendQueue(16, w, func(error) { t.Error("unexpected fail") })
	q.Send([]byte("first"))
	waitFor(t, "the first write to start", func() bool { return n.Load() == 1 })
	for i := range 5 {
		q.Send([]byte{byte(i)})
	}
	close(block)
	waitFor(t, "every frame", func() bool { return n.Load() == 6 })
	if got := w.sizes(); len(got) != 2 || got[0] != 1 || got[1] != 5 {
		t.Fatalf("flushes of %v frames, want [1 5]", got)
	}
	q.Close()
	q.Wait()
}

// TestSendQueueHold: frames sent during a Hold are written together once released.
func TestSendQueueHold(t *testing.T) {
	var n atomic.Int32
	w := eachFrame(func([]byte) error { n.Add(1); return nil })
	q := NewSendQueue(16, w, func(error) { t.Error("unexpected fail") })
	q.Hold()
	q.Send([]byte("ack"))
	q.Send([]byte("message"))
	time.Sleep(20 * time.Millisecond)
	if n.Load() != 0 {
		t.Fatal("a held queue wrote")
	}
	q.Release()
	waitFor(t, "both frames", func() bool { return n.Load() == 2 })
	if got := w.sizes(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("flushes of %v frames, want [2]", got)
	}
	q.Close()
	q.Wait()
}

// TestSendQueueRepliesNeverOverflow: replies (acks, refusals) beyond what the queue
// takes of its own frames never close it; once replyLimit wait unwritten, Reply
// waits for the writer instead, and the frames all go out in order.
func TestSendQueueRepliesNeverOverflow(t *testing.T) {
	block := make(chan struct{})
	writing := make(chan struct{}, 1)
	var mu sync.Mutex
	var got []string
	q := NewSendQueue(8, eachFrame(func(f []byte) error {
		select {
		case writing <- struct{}{}:
		default:
		}
		<-block
		mu.Lock()
		got = append(got, string(f))
		mu.Unlock()
		return nil
	}), func(err error) { t.Errorf("queue failed: %v", err) })
	q.Send([]byte("s0"))
	<-writing                // the writer holds s0; what follows waits in the queue
	for i := 1; i < 9; i++ { // the queue's own frames, up to its limit
		if !q.Send([]byte{'s', byte('0' + i)}) {
			t.Fatalf("Send %d refused", i)
		}
	}
	if !q.Reply([]byte("r0")) || !q.Reply([]byte("r1")) { // replyLimit is 8/4 = 2
		t.Fatal("Reply refused")
	}
	third := make(chan bool)
	go func() { third <- q.Reply([]byte("r2")) }()
	select {
	case <-third:
		t.Fatal("a third unwritten reply did not wait for the writer")
	case <-time.After(50 * time.Millisecond):
	}
	close(block)
	if !<-third {
		t.Fatal("the waiting Reply was refused")
	}
	waitFor(t, "every frame", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 12 })
	if got[9] != "r0" || got[11] != "r2" {
		t.Fatalf("order %v", got)
	}
	q.Close()
	q.Wait()
}
