package hub

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// countingSender counts frames; it never refuses one.
type countingSender struct{ n atomic.Int64 }

func (c *countingSender) Send([]byte) bool { c.n.Add(1); return true }

func TestSendQueueWritesInOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	q := NewSendQueue(1000, func(f []byte) error {
		mu.Lock()
		got = append(got, string(f))
		mu.Unlock()
		return nil
	}, func(error) { t.Error("unexpected fail") })
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
	q := NewSendQueue(2, func([]byte) error { <-block; return nil }, func(err error) {
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
	q := NewSendQueue(4, func([]byte) error { return boom }, func(err error) { failed <- err })
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
		queues[i] = NewSendQueue(4, func([]byte) error { return nil }, func(error) {})
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
	q := NewSendQueue(1<<20, func([]byte) error { return nil }, func(error) {})
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
	q := NewSendQueue(256, func([]byte) error { written <- struct{}{}; return nil }, func(error) {})
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
