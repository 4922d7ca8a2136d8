package sqlstore

import (
	"sync"
	"time"

	"parley/internal/chat"
)

// Pending messages (SQLite). A group commit in WAL mode writes every page it changed,
// and messages is clustered by (session_id, seq), so inserting a batch that carries
// one message each of a hundred chats would write a hundred pages for a few KB of
// rows. Instead, the writer stores each commit's new messages as one row of
// message_pending: a blob holding all of them (appendPending), one insert per commit
// whatever it carries. The messages wait there, and in memory (pendingSet), until a
// merge moves a chat's pending messages into messages, all of them together, so a
// merge fills whole pages of one chat. A chat is merged once mergeRows of its messages
// wait, or once its oldest has waited mergeAge (quiet chats), or when the writer is
// idle; a batch row is deleted, in the merge's transaction, once every message in it
// has been merged (or deleted). So a message is in exactly one of the two at any
// moment.
//
// Reads. The file belongs to this process and only the writer stores messages, so
// the pending messages in memory are exactly those of message_pending: a read takes a
// chat's pending messages from memory and reads messages only for what is older. A
// merge takes a chat's oldest pending messages, so its pending messages are always its
// newest, and what a merge moves leaves memory only after its commit: a read that
// copies the pending messages first and reads messages after cannot miss one.
//
// At start the batches are read back into memory (a crash leaves them there), and
// the idle writer merges them. A deleted chat (purge) is dropped from memory at once
// and marked in message_pending_drops, so its messages still inside batch rows are not
// read back after a restart; a mark goes once no batch row it covers is left.
//
// Merges block appends (one writer), so one merge moves at most mergeBudget messages:
// as many as the last merge's speed says fit in about mergePause.
const (
	mergeRows  = 128 // about seven pages of one chat's rows
	mergeAge   = time.Second
	mergeFirst = 1024
	mergeMin   = 256
	mergeMax   = 65536
	mergePause = 4 * time.Millisecond
	mergeIdle  = 250 * time.Millisecond
	// maxPending bounds the messages held in memory: past it (merges failing), new
	// messages are refused with EUnavailable until a merge succeeds.
	maxPending = 1 << 20
)

// pendingBatch is the messages of one row of message_pending.
type pendingBatch struct {
	id   int64
	at   time.Time // when it was committed (or read back at start)
	msgs []chat.Message
	left int // messages neither merged nor dropped
}

// pendingRef is one pending message of a chat and the batch that holds it.
type pendingRef struct {
	m *chat.Message
	b *pendingBatch
}

// pendingSet is the pending messages in memory. The writer changes it, always under
// mu after the transaction that made the change committed; readers take mu for
// reading. The writer reads it without the lock (nobody else writes).
type pendingSet struct {
	mu        sync.RWMutex
	bySession map[string][]pendingRef // each chat's pending messages in seq order
	order     []*pendingBatch         // batches with messages left, oldest first (emptied ones leave from the front)
	full      []string                // chats that reached mergeRows since their last merge (maybe stale)
	empty     []int64                 // batch rows with no message left, to delete
	dropped   map[string]int64        // chat → last batch id its drop mark covers
	rows      int                     // pending messages
	nextID    int64                   // id of the next batch row
	budget    int                     // messages one merge moves at most
	fixed     bool                    // tests: keep budget as set
	rowsDue   int                     // mergeRows; tests lower it
}

func newPendingSet() *pendingSet {
	return &pendingSet{bySession: make(map[string][]pendingRef), dropped: make(map[string]int64), nextID: 1, budget: mergeFirst, rowsDue: mergeRows}
}

// add appends a committed batch. p.mu must be held.
func (p *pendingSet) add(b *pendingBatch) {
	b.left = len(b.msgs)
	if b.left == 0 {
		p.empty = append(p.empty, b.id)
	} else {
		p.order = append(p.order, b)
	}
	for i := range b.msgs {
		m := &b.msgs[i]
		s := append(p.bySession[m.SessionID], pendingRef{m, b})
		p.bySession[m.SessionID] = s
		if len(s) == p.rowsDue {
			p.full = append(p.full, m.SessionID)
		}
	}
	p.rows += len(b.msgs)
	p.nextID = max(p.nextID, b.id+1)
}

// release counts a batch's message merged or dropped. p.mu must be held.
func (p *pendingSet) release(b *pendingBatch) {
	if b.left--; b.left == 0 {
		p.empty = append(p.empty, b.id)
	}
}

// drop forgets a chat's pending messages (deleted); through is the last batch id
// that may hold any. p.mu must be held.
func (p *pendingSet) drop(session string, through int64) {
	for _, r := range p.bySession[session] {
		p.release(r.b)
	}
	p.rows -= len(p.bySession[session])
	delete(p.bySession, session)
	p.dropped[session] = max(p.dropped[session], through)
}

// merged removes the first n pending messages of session, now in messages. p.mu
// must be held.
func (p *pendingSet) merged(session string, n int) {
	s := p.bySession[session]
	for _, r := range s[:n] {
		p.release(r.b)
	}
	p.rows -= n
	if n == len(s) {
		delete(p.bySession, session)
		return
	}
	p.bySession[session] = append([]pendingRef(nil), s[n:]...) // let the merged prefix go
}

// trimmed forgets the batch rows deleted (p.empty) and the emptied batches at the
// front of order. p.mu must be held.
func (p *pendingSet) trimmed() {
	p.empty = p.empty[:0]
	i := 0
	for i < len(p.order) && p.order[i].left == 0 {
		i++
	}
	clear(p.order[:i])
	p.order = p.order[i:]
	if len(p.order) == 0 {
		p.order = nil
	}
}

// live reports whether m, in batch id, belongs to a chat not dropped since.
func (p *pendingSet) live(m *chat.Message, id int64) bool {
	through, ok := p.dropped[m.SessionID]
	return !ok || id > through
}

// after copies up to limit of the chat's pending messages with seq > after, and
// reports whether they are all of the chat's messages after it: true when the chat
// has pending messages and the oldest is no newer than after+1 (everything older is in
// messages, everything newer is pending).
func (p *pendingSet) after(session string, after int64, limit int) ([]chat.Message, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := p.bySession[session]
	if len(s) == 0 {
		return nil, false
	}
	first := s[0].m.Seq
	complete := first <= after+1
	i := 0
	if after >= first {
		i = min(int(after-first+1), len(s)) // a chat's pending seqs are contiguous
	}
	out := make([]chat.Message, 0, min(limit, len(s)-i))
	for _, r := range s[i:] {
		if len(out) == limit {
			break
		}
		out = append(out, *r.m)
	}
	return out, complete
}

// lastSeq returns the chat's newest pending seq, or 0 when none is pending.
func (p *pendingSet) lastSeq(session string) int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if s := p.bySession[session]; len(s) > 0 {
		return s[len(s)-1].m.Seq
	}
	return 0
}

// due returns the chats to merge now, at most about budget messages: those that
// reached mergeRows, then those whose oldest pending message waited mergeAge; every
// chat when idle.
func (p *pendingSet) due(idle bool, now time.Time) []string {
	var out []string
	n := 0
	seen := make(map[string]bool)
	take := func(s string) bool {
		if k := len(p.bySession[s]); k > 0 && !seen[s] {
			seen[s] = true
			out = append(out, s)
			n += k
		}
		return n < p.budget
	}
	if idle {
		for s := range p.bySession {
			if !take(s) {
				break
			}
		}
		return out
	}
	for len(p.full) > 0 && n < p.budget {
		s := p.full[0]
		p.full = p.full[1:]
		take(s)
	}
	for _, b := range p.order {
		if n >= p.budget || now.Sub(b.at) < mergeAge {
			break
		}
		for i := range b.msgs {
			m := &b.msgs[i]
			if s := p.bySession[m.SessionID]; len(s) > 0 && s[0].m.Seq <= m.Seq && !take(m.SessionID) {
				break
			}
		}
	}
	return out
}

// resize sets the merge budget from the last merge (merged messages in took),
// aiming at mergePause.
func (p *pendingSet) resize(merged int, took time.Duration) {
	if p.fixed || merged == 0 {
		return
	}
	want := int(int64(mergePause) * int64(merged) / max(1, int64(took)))
	p.budget = min(max((p.budget+want)/2, mergeMin), mergeMax)
}
