package sqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"parley/internal/chat"
)

// TestMySQLReplicasDedupeUnderLoad has two stores (replicas) append to overlapping
// sessions at once, every client id sent several times from both, often in the same
// batch: each id is stored once, every caller of an id gets the same seq, exactly one
// caller is told it was new, and each session's seqs run 1..n.
func TestMySQLReplicasDedupeUnderLoad(t *testing.T) {
	const sessionsN, idsPer, sendsPerReplica, goroutines = 8, 60, 2, 16
	stores := []*DB{openTestMySQL(t), openTestMySQL(t)}
	sessions := make([]string, sessionsN)
	for i := range sessions {
		sessions[i] = chat.NewSessionID()
	}
	type sent struct {
		seq int64
		dup bool
	}
	var mu sync.Mutex
	answers := map[msgKey][]sent{}
	var wg sync.WaitGroup
	for r, db := range stores {
		var work []msgKey // every (session, id), sendsPerReplica times, shuffled
		for range sendsPerReplica {
			for _, s := range sessions {
				for i := range idsPer {
					work = append(work, msgKey{s, fmt.Sprint("id-", i)})
				}
			}
		}
		rand.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(work); i += goroutines {
					k := work[i]
					m, dup, err := db.Append(context.Background(), testMessage(k.session, k.client))
					if err != nil {
						t.Errorf("replica %d: Append %v: %v", r, k, err)
						return
					}
					mu.Lock()
					answers[k] = append(answers[k], sent{m.Seq, dup})
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for k, got := range answers {
		fresh := 0
		for _, a := range got {
			if a.seq != got[0].seq {
				t.Fatalf("%v answered with seqs %v", k, got)
			}
			if !a.dup {
				fresh++
			}
		}
		if fresh != 1 || len(got) != 2*sendsPerReplica {
			t.Fatalf("%v: %d answers, %d of them new; want %d, 1 new", k, len(got), fresh, 2*sendsPerReplica)
		}
	}
	for _, s := range sessions {
		msgs, err := stores[1].Messages(context.Background(), s, 0, 10*idsPer)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != idsPer {
			t.Fatalf("session holds %d messages, want %d", len(msgs), idsPer)
		}
		for i, m := range msgs {
			if want := answers[msgKey{s, m.ClientID}][0].seq; m.Seq != int64(i+1) || m.Seq != want {
				t.Fatalf("message %d (%s) has seq %d; want %d, as answered %d", i, m.ClientID, m.Seq, i+1, want)
			}
		}
	}
	// Both take their message_seqs locks in session order and read nothing they did
	// not lock: a deadlock means a statement locked rows out of order or beyond its own.
	if a, b := stores[0].w.retries.Load(), stores[1].w.retries.Load(); a+b > 0 {
		t.Errorf("batches rerun after deadlocks or lock waits: %d and %d, want none", a, b)
	}
}

// TestMySQLOneBatchOfEverything commits one hand-made batch holding every case the
// MySQL writer tells apart: new messages in several sessions, an id stored earlier by
// another replica, a repeat inside the batch, an ended chat (a new message refused, a
// resend answered), a session without a sessions row, and a delete between appends.
func TestMySQLOneBatchOfEverything(t *testing.T) {
	ctx := context.Background()
	other, db := openTestMySQL(t), openTestMySQL(t)
	live, _, err := db.Enter(ctx, "batch-"+chat.NewSessionID()[:8], "ann@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	ended, _, err := db.Enter(ctx, "batch-"+chat.NewSessionID()[:8], "ann@example.org", chat.Now())
	if err != nil {
		t.Fatal(err)
	}
	rowless, wiped := chat.NewSessionID(), chat.NewSessionID()
	for _, m := range []chat.Message{testMessage(live.ID, "a"), testMessage(live.ID, "b"),
		testMessage(ended.ID, "e1"), testMessage(wiped, "w1")} {
		if _, _, err := other.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if won, err := db.End(ctx, ended.ID, "ann@example.org", chat.Now()); err != nil || !won {
		t.Fatalf("End = %v, %v", won, err)
	}

	w, err := newWriter(ctx, db) // a second writer, run by hand rather than by run
	if err != nil {
		t.Fatal(err)
	}
	defer w.dialect.close()
	type want struct {
		seq   int64
		dup   bool
		ended bool
	}
	cases := []struct {
		op   writeOp
		m    chat.Message
		want want
	}{
		{opAppend, testMessage(live.ID, "c"), want{seq: 3}},
		{opAppend, testMessage(live.ID, "a"), want{seq: 1, dup: true}},   // stored by the other replica
		{opAppend, testMessage(rowless, "x"), want{seq: 1}},              // no sessions row: not ended
		{opAppend, testMessage(live.ID, "c"), want{seq: 3, dup: true}},   // repeat in the batch
		{opAppend, testMessage(ended.ID, "e2"), want{ended: true}},       // new after the end
		{opAppend, testMessage(ended.ID, "e1"), want{seq: 1, dup: true}}, // resend of one before it
		{opAppend, testMessage(wiped, "w2"), want{seq: 2}},               // then deleted
		{opDelete, chat.Message{SessionID: wiped}, want{}},               //
		{opAppend, testMessage(wiped, "w1"), want{seq: 1}},               // new again after the delete
		{opAppend, testMessage(rowless, "y"), want{seq: 2}},              //
		{opAppend, testMessage(live.ID, "b"), want{seq: 2, dup: true}},   //
		{opAppend, testMessage(live.ID, "d"), want{seq: 4}},              //
		{opAppend, testMessage(ended.ID, "e2"), want{ended: true}},       // still refused
		{opAppend, testMessage(live.ID, "a"), want{seq: 1, dup: true}},   //
		{opAppend, testMessage(rowless, "x"), want{seq: 1, dup: true}},   //
		{opAppend, testMessage(wiped, "w1"), want{seq: 1, dup: true}},    //
		{opAppend, testMessage(wiped, "w3"), want{seq: 2}},               //
		{opAppend, testMessage(ended.ID, "e1"), want{seq: 1, dup: true}}, //
		{opAppend, testMessage(live.ID, "e1"), want{seq: 5}},             // same id, other session
		{opAppend, testMessage(rowless, "a"), want{seq: 3}},              //
	}
	for _, c := range cases {
		r := newRequest(c.op)
		r.in = c.m
		r.in.CreatedAt = chat.Now()
		w.batch = append(w.batch, r)
	}
	reqs := append([]*request(nil), w.batch...)
	w.flush()
	if w.batches.Load() != 1 {
		t.Fatalf("%d batches, want 1", w.batches.Load())
	}
	for i, c := range cases {
		r := reqs[i]
		if c.op == opDelete {
			if r.err != nil || r.deleted != 2 {
				t.Fatalf("delete: %d rows, %v; want 2", r.deleted, r.err)
			}
			continue
		}
		if c.want.ended {
			if !chat.IsCode(r.err, chat.EChatEnded) {
				t.Fatalf("case %d (%s): err %v, want chat_ended", i, c.m.ClientID, r.err)
			}
			continue
		}
		if r.err != nil || r.out.Seq != c.want.seq || r.dup != c.want.dup || r.out.ClientID != c.m.ClientID {
			t.Fatalf("case %d (%s): seq %d dup %v id %s err %v; want %+v", i, c.m.ClientID, r.out.Seq, r.dup, r.out.ClientID, r.err, c.want)
		}
	}
	for s, n := range map[string]int{live.ID: 5, rowless: 3, wiped: 2, ended.ID: 1} {
		checkContiguous(t, other, s, n)
		m, _, err := other.Append(ctx, testMessage(s, "after"))
		if s == ended.ID {
			if !chat.IsCode(err, chat.EChatEnded) {
				t.Fatalf("append to the ended chat: %v", err)
			}
			continue
		}
		if err != nil || m.Seq != int64(n+1) { // the other replica continues from message_seqs
			t.Fatalf("next append on the other replica = seq %d, %v; want %d", m.Seq, err, n+1)
		}
	}
}
