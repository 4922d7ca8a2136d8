package hub

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"parley/internal/chat"
	"parley/internal/membus"
)

// trySocket is a TryFrameWriter: while open, TryFlush writes the batch at once; while
// stuck, TryFlush writes nothing and Flush waits until it is opened again, as a
// socket whose reader has stopped reading.
type trySocket struct {
	mu      sync.Mutex
	batch   [][]byte
	got     []string
	stuck   bool
	opened  chan struct{} // closed when a stuck socket opens
	tries   atomic.Int64
	flushes atomic.Int64 // blocking Flushes
}

func newTrySocket(stuck bool) *trySocket {
	return &trySocket{stuck: stuck, opened: make(chan struct{})}
}

func (s *trySocket) Add(frame []byte) bool {
	s.batch = append(s.batch, frame)
	return false
}

func (s *trySocket) TryFlush() (bool, error) {
	s.tries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stuck {
		return false, nil
	}
	s.take()
	return true, nil
}

func (s *trySocket) Flush() error {
	s.flushes.Add(1)
	<-s.opened
	s.mu.Lock()
	defer s.mu.Unlock()
	s.take()
	return nil
}

// take moves the batch to what was written; s.mu is held.
func (s *trySocket) take() {
	for _, f := range s.batch {
		s.got = append(s.got, string(f))
	}
	s.batch = s.batch[:0]
}

func (s *trySocket) open() {
	s.mu.Lock()
	s.stuck = false
	s.mu.Unlock()
	close(s.opened)
}

func (s *trySocket) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// TestFlusherStuckConnectionHoldsUpNoOther: the shared flushers write every queue
// whose socket takes its frames at once, in order, and a connection whose socket is
// full gets a writer of its own: the others' frames keep going out meanwhile, and
// its own go out, in order, once its socket drains.
func TestFlusherStuckConnectionHoldsUpNoOther(t *testing.T) {
	stuck := newTrySocket(true)
	sq := NewSendQueue(100, stuck, func(error) { t.Error("the stuck queue failed") })
	const others, frames = 20, 50
	socks := make([]*trySocket, others)
	queues := make([]*SendQueue, others)
	for i := range socks {
		socks[i] = newTrySocket(false)
		queues[i] = NewSendQueue(100, socks[i], func(error) { t.Error("a queue failed") })
	}
	for n := range frames {
		sq.Send([]byte{byte(n)})
		for _, q := range queues {
			q.Send([]byte{byte(n)})
		}
	}
	for i, s := range socks {
		waitFor(t, "every frame of an open socket written", func() bool { return len(s.written()) == frames })
		for n, f := range s.written() {
			if f != string([]byte{byte(n)}) {
				t.Fatalf("socket %d: frame %d out of order", i, n)
			}
		}
		if s.flushes.Load() != 0 {
			t.Fatalf("socket %d: %d blocking flushes, want none: the flushers write open sockets", i, s.flushes.Load())
		}
	}
	if len(stuck.written()) != 0 {
		t.Fatal("the stuck socket wrote frames")
	}
	stuck.open()
	waitFor(t, "the stuck socket's frames written once it opens", func() bool { return len(stuck.written()) == frames })
	for n, f := range stuck.written() {
		if f != string([]byte{byte(n)}) {
			t.Fatalf("stuck socket: frame %d out of order", n)
		}
	}
	// Once its own writer has drained it and stopped, its next frames go through a
	// flusher again.
	waitFor(t, "the stuck queue's own writer to stop", func() bool {
		sq.mu.Lock()
		defer sq.mu.Unlock()
		return !sq.writing
	})
	tries := stuck.tries.Load()
	sq.Send([]byte("again"))
	waitFor(t, "a frame after the socket opened", func() bool { return len(stuck.written()) == frames+1 })
	if stuck.tries.Load() == tries {
		t.Fatal("a frame after the stuck spell did not go through a flusher")
	}
	for _, q := range append(queues, sq) {
		q.Close()
		q.Wait()
	}
}

// TestOverdueQueuesWrittenByReaders: a queue that has waited on its flusher's list
// for over helpAfter is written by the reader that calls FlushOverdue, oldest first
// and helpTurns at a time, while the flusher's own goroutine does not come (busy, as
// under load; here it never runs); a younger queue is left to gather frames.
func TestOverdueQueuesWrittenByReaders(t *testing.T) {
	f := &flusher{running: true} // its goroutine never comes
	socks := make([]*trySocket, helpTurns+1)
	queues := make([]*SendQueue, len(socks))
	for i := range socks {
		socks[i] = newTrySocket(false)
		queues[i] = NewSendQueue(10, socks[i], func(error) { t.Error("a queue failed") })
		queues[i].f = f
		queues[i].Send([]byte{byte(i)})
	}
	f.mu.Lock()
	first, last := queues[0].listedAt, queues[len(queues)-1].listedAt
	f.mu.Unlock()
	written := func() (n []int) {
		for _, s := range socks {
			n = append(n, len(s.written()))
		}
		return n
	}
	f.overdue(first + int64(helpAfter)) // not over helpAfter yet
	if got := written(); slices.Max(got) != 0 {
		t.Fatalf("frames written per socket %v before any queue was overdue", got)
	}
	due := last + int64(helpAfter) + 1 // every queue listed so far is overdue
	f.overdue(due)
	if got, want := written(), append(slices.Repeat([]int{1}, helpTurns), 0); !slices.Equal(got, want) {
		t.Fatalf("after one reader's help: frames written per socket %v, want %v (the oldest %d)", got, want, helpTurns)
	}
	f.overdue(due) // the written queues went to the back, behind the last one
	if got := written(); slices.Min(got) != 1 {
		t.Fatalf("after a second reader's help: frames written per socket %v, want one each", got)
	}
	for _, q := range queues {
		q.Close()
	}
	for f.waiting() > 0 { // their turns find them closed and end their writers
		f.overdue(math.MaxInt64)
	}
	for _, q := range queues {
		q.Wait()
	}
}

// TestAloneOnTheBusMessagesStayLocal: a hub alone on the in-process bus does not hand
// it the messages it delivers itself (nobody else would hear them), but still hands it
// every other event; with a second hub on the bus, messages go through it too.
func TestAloneOnTheBusMessagesStayLocal(t *testing.T) {
	bus := membus.New()
	defer bus.Close()
	var msgs, others atomic.Int64
	cancel, err := bus.Subscribe(context.Background(), "s1", func(ev chat.Event) {
		if ev.Type == chat.EventMessage {
			msgs.Add(1)
		} else {
			others.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	h := New(Options{Broker: bus})
	defer h.Close()
	h.Publish(chat.Event{Type: chat.EventMessage, Session: "s1", Seq: 1, Frame: []byte("m1")})
	h.Publish(chat.Event{Type: chat.EventEnded, Session: "s1", Frame: []byte("ended")})
	waitFor(t, "the ended event through the bus", func() bool { return others.Load() == 1 })
	if msgs.Load() != 0 {
		t.Fatal("a hub alone on the bus published a message")
	}
	leave := bus.JoinHub() // a second replica's hub in the same process
	h.Publish(chat.Event{Type: chat.EventMessage, Session: "s1", Seq: 2, Frame: []byte("m2")})
	waitFor(t, "a message through the bus with two hubs on it", func() bool { return msgs.Load() == 1 })
	leave()
	if bus.Hubs() != 1 {
		t.Fatalf("Hubs() = %d after the second hub left, want 1", bus.Hubs())
	}
}
