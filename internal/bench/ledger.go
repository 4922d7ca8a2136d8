package bench

// ledger is what one client received, kept compactly so a long run costs little
// memory: a count per message number of its own messages and of its peer's, and a
// count per seq. The bench numbers every client's messages 1, 2, 3…, so a slice
// indexed by number replaces a map of ids.
type ledger struct {
	own     []uint8 // own[n]: times this client's message n came back to it
	peer    []uint8 // peer[n]: times the peer's message n arrived here
	seqs    []uint8 // seqs[s]: times seq s arrived here
	foreign int64   // message frames with an id or sender not of this run
	session string  // the session of the first welcome
}

// bump increments counts[i], growing the slice, saturating at 255.
func bump(counts []uint8, i int) []uint8 {
	for len(counts) <= i {
		counts = append(counts, 0)
	}
	if counts[i] < 255 {
		counts[i]++
	}
	return counts
}

func (l *ledger) ownMessage(n int)  { l.own = bump(l.own, n) }
func (l *ledger) peerMessage(n int) { l.peer = bump(l.peer, n) }

func (l *ledger) seq(s int64) {
	if s > 0 && s < 1<<31 {
		l.seqs = bump(l.seqs, int(s))
	}
}

// maxSeq is the highest seq received, the point to resume after on a reconnect.
func (l *ledger) maxSeq() int64 { return int64(len(l.seqs) - 1) }

// sender is one client's side of the final check: how many messages it sent, which
// of them the server refused (never stored, so not expected anywhere), and what it
// received.
type sender struct {
	sent    int          // messages 1..sent were written at least once
	refused map[int]bool // refused by an error frame, so not expected
	acked   map[int]bool // acknowledged by the server (Parley's ack frame)
	got     *ledger
}

// tally is the verdict of the loss and duplication check.
type tally struct {
	Lost          int64 `json:"lost"`           // a sent message missing at its sender or at the peer
	LostAcked     int64 `json:"lost_acked"`     // of them, misses of a message the server had acknowledged
	Duplicated    int64 `json:"duplicated"`     // extra copies of a message at a client
	SeqGaps       int64 `json:"seq_gaps"`       // seqs missing below a client's highest seq
	SeqDuplicates int64 `json:"seq_duplicates"` // extra copies of a seq at a client
	Foreign       int64 `json:"foreign"`        // messages this run did not send
}

func (t *tally) add(o tally) {
	t.Lost += o.Lost
	t.LostAcked += o.LostAcked
	t.Duplicated += o.Duplicated
	t.SeqGaps += o.SeqGaps
	t.SeqDuplicates += o.SeqDuplicates
	t.Foreign += o.Foreign
}

// tallyRoom checks one room: each message a or b sent (and the server did not refuse)
// arrived exactly once back at its sender and exactly once at the peer, and each
// client's seqs run 1..max without gaps or repeats.
func tallyRoom(a, b sender) tally {
	var t tally
	t.add(tallyDirection(a, b))
	t.add(tallyDirection(b, a))
	t.add(tallySeqs(a.got))
	t.add(tallySeqs(b.got))
	return t
}

// tallyDirection checks the messages from sent at from itself (own) and at to (peer).
func tallyDirection(from, to sender) tally {
	var t tally
	check := func(counts []uint8, n int) {
		c := 0
		if n < len(counts) {
			c = int(counts[n])
		}
		switch {
		case c == 0:
			t.Lost++
			if from.acked[n] {
				t.LostAcked++
			}
		case c > 1:
			t.Duplicated += int64(c - 1)
		}
	}
	for n := 1; n <= from.sent; n++ {
		if from.refused[n] {
			continue
		}
		check(from.got.own, n)
		check(to.got.peer, n)
	}
	return t
}

// tallySeqs checks that a client's seqs are 1..max, each once.
func tallySeqs(l *ledger) tally {
	t := tally{Foreign: l.foreign}
	for s := 1; s < len(l.seqs); s++ {
		switch c := l.seqs[s]; {
		case c == 0:
			t.SeqGaps++
		case c > 1:
			t.SeqDuplicates += int64(c - 1)
		}
	}
	return t
}
