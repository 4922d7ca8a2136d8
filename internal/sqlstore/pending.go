package sqlstore

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
)

// Pending messages (SQLite). A commit in WAL mode writes every page it changed, and
// message_chunks is clustered by chat, so storing each message in its chat's rows as
// it comes would write a page per chat per commit for a few bytes of each. Instead an
// append writes its message as one record of the message log (msglog.go) and adds it
// here, in memory (pendingSet), grouped in log batches of up to logBatch messages.
// The messages wait until a merge moves a chat's pending messages into
// message_chunks, all of them together, so a merge fills whole pages of one chat. A
// chat is merged once mergeRows of its messages wait, or once its oldest has waited
// mergeAge (quiet chats), or when the appends are quiet; merges run on the writer's
// tick (mergeTick), on its own connection, beside the appends, which never wait for
// them. A log segment is deleted once every message in it is merged (or deleted) and
// a checkpoint has synced those merges (msglog.go).
//
// Reads. The file belongs to this process and only the writer stores messages, so
// the pending messages in memory are exactly those not yet in message_chunks: a read
// takes a chat's pending messages from memory and reads message_chunks only for what
// is older than them. A merge takes a chat's oldest pending messages, so its pending
// messages are always its newest, and what a merge moves leaves memory only after its
// commit: a read that copies the pending messages first and reads message_chunks
// after cannot miss one (and an append reloading a chat's seqs and ids reads them in
// that order too).
//
// At start the log is read back into memory (a crash or a stop leaves records
// there), skipping what a merge had stored already, and the idle writer merges them.
// A deleted chat (purge) is dropped from memory at once and a drop record written to
// the log, so its earlier records are not read back after a restart. Rows of
// message_pending, where an earlier version kept each group commit's messages, are
// read back and merged at start before the log is.
//
// One merge moves at most mergeBudget messages: as many as the last merge's speed
// says fit in about mergePause, so an End or a delete waiting for the writer waits
// little.
const (
	mergeRows  = 128 // about seven pages of one chat's rows
	mergeAge   = time.Second
	mergeFirst = 1024
	mergeMin   = 256
	mergeMax   = 65536
	mergePause = 4 * time.Millisecond
	mergeTick  = 20 * time.Millisecond
	// maxPending bounds the messages held in memory: past it (merges failing), new
	// messages are refused with EUnavailable until a merge succeeds.
	maxPending = 1 << 20
)

// pendingBatch is a group of pending messages: one row of message_pending (written
// by an earlier version, read back at start), or up to logBatch consecutive messages
// of the message log (msglog.go), which the appenders fill in place (seg set).
type pendingBatch struct {
	id     int64
	at     time.Time // when its first message was stored (or read back at start)
	msgs   []chat.Message
	left   int         // messages neither merged nor dropped
	seg    *logSegment // the log segment holding its messages; nil for a message_pending row
	sealed bool        // a log batch takes no more messages
}

// logBatch is how many messages a log batch holds: allocated at once, so the
// pointers into it stay put while appenders fill it.
const logBatch = 256

// finished reports whether the batch will never again hold a pending message.
func (b *pendingBatch) finished() bool { return b.left == 0 && (b.seg == nil || b.sealed) }

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
	aging     agingQueue              // chats by when their oldest pending message came (maybe stale)
	empty     []*pendingBatch         // batches finished since the last merge (rows to delete)
	dropped   map[string]int64        // chat → last batch id its drop mark covers
	rows      int                     // pending messages
	nextID    int64                   // id of the next batch row
	budget    int                     // messages one merge moves at most
	fixed     bool                    // tests: keep budget as set
	rowsDue   int                     // mergeRows; tests lower it
	open      *pendingBatch           // the log batch appenders fill (pendingSet.addLogged)
	size      atomic.Int64            // rows, readable without mu
}

func newPendingSet() *pendingSet {
	return &pendingSet{bySession: make(map[string][]pendingRef), dropped: make(map[string]int64), nextID: 1, budget: mergeFirst, rowsDue: mergeRows}
}

// agingQueue lists chats in the order their oldest pending message came, so the merge
// finds the chats whose messages waited mergeAge without looking at their messages:
// a chat is queued when its first message comes, and again after a merge that left
// some of its messages pending. An entry may be stale (the chat merged since, by
// mergeRows or a delete); due skips those.
type agingQueue struct {
	list []agingEntry
	head int
}

// agingEntry is a chat and when its oldest pending message came (its batch's at).
type agingEntry struct {
	session string
	at      time.Time
}

func (q *agingQueue) push(session string, at time.Time) {
	if q.head > 0 && q.head == len(q.list) {
		clear(q.list)
		q.list, q.head = q.list[:0], 0
	}
	q.list = append(q.list, agingEntry{session, at})
}

// front returns the oldest entry; ok false when the queue is empty.
func (q *agingQueue) front() (e agingEntry, ok bool) {
	if q.head == len(q.list) {
		return agingEntry{}, false
	}
	return q.list[q.head], true
}

// rebuild queues each chat of bySession once, oldest first: stale entries pile up
// where merges find chats by other ways (mergeRows, idle), and are dropped here.
func (q *agingQueue) rebuild(bySession map[string][]pendingRef) {
	clear(q.list)
	q.list, q.head = q.list[:0], 0
	for s, refs := range bySession {
		q.list = append(q.list, agingEntry{s, refs[0].b.at})
	}
	slices.SortFunc(q.list, func(a, b agingEntry) int { return a.at.Compare(b.at) })
}

func (q *agingQueue) len() int { return len(q.list) - q.head }

func (q *agingQueue) pop() {
	q.list[q.head] = agingEntry{}
	q.head++
	if q.head >= 1024 && q.head*2 >= len(q.list) { // let the popped front go
		q.list = append(q.list[:0], q.list[q.head:]...)
		q.head = 0
	}
}

// add appends a committed batch (read back at start). p.mu must be held.
func (p *pendingSet) add(b *pendingBatch) {
	b.left = len(b.msgs)
	if b.seg != nil {
		b.sealed = true
		b.seg.open++
	}
	if b.left == 0 {
		p.finish(b)
	} else {
		p.order = append(p.order, b)
	}
	for i := range b.msgs {
		m := &b.msgs[i]
		s := append(p.bySession[m.SessionID], pendingRef{m, b})
		p.bySession[m.SessionID] = s
		p.counted(m.SessionID, s)
	}
	p.rows += len(b.msgs)
	p.size.Store(int64(p.rows))
	p.nextID = max(p.nextID, b.id+1)
}

// release counts a batch's message merged or dropped. p.mu must be held.
func (p *pendingSet) release(b *pendingBatch) {
	if b.left--; b.finished() {
		p.finish(b)
	}
}

// finish records that b will hold no pending message again: its row is deleted by
// the next merge, or its log segment has one batch fewer to wait for. p.mu must be
// held.
func (p *pendingSet) finish(b *pendingBatch) {
	if b.seg != nil {
		b.seg.open--
	} else {
		p.empty = append(p.empty, b)
	}
}

// addLogged adds m, just written to the log's segment seg, to the open log batch
// (beginning a new one when there is none, it is full or seg is newer). p.mu must be
// held.
func (p *pendingSet) addLogged(m *chat.Message, seg *logSegment) {
	b := p.open
	if b == nil || len(b.msgs) == cap(b.msgs) || b.seg != seg {
		p.seal()
		b = &pendingBatch{id: p.nextID, at: time.Now(), msgs: make([]chat.Message, 0, logBatch), seg: seg}
		p.nextID++
		seg.open++
		p.open = b
		p.order = append(p.order, b)
	}
	b.msgs = append(b.msgs, *m)
	b.left++
	p.rows++
	p.size.Store(int64(p.rows))
	ref := &b.msgs[len(b.msgs)-1]
	s := append(p.bySession[m.SessionID], pendingRef{ref, b})
	p.bySession[m.SessionID] = s
	p.counted(m.SessionID, s)
}

// counted notes that a message was added to session's pending messages, now s: its
// first is queued by age, and a chat reaching mergeRows is due. p.mu must be held.
func (p *pendingSet) counted(session string, s []pendingRef) {
	if len(s) == 1 {
		p.aging.push(session, s[0].b.at)
	}
	if len(s) == p.rowsDue {
		p.full = append(p.full, session)
	}
}

// seal closes the open log batch. p.mu must be held.
func (p *pendingSet) seal() {
	if b := p.open; b != nil {
		b.sealed = true
		if b.left == 0 {
			p.finish(b)
		}
		p.open = nil
	}
}

// drop forgets a chat's pending messages (deleted); through is the last batch id
// that may hold any. p.mu must be held.
func (p *pendingSet) drop(session string, through int64) {
	for _, r := range p.bySession[session] {
		p.release(r.b)
	}
	p.rows -= len(p.bySession[session])
	p.size.Store(int64(p.rows))
	delete(p.bySession, session)
	if through > 0 { // a mark of message_pending_drops, read back at start
		p.dropped[session] = max(p.dropped[session], through)
	}
}

// count returns how many messages are pending, without taking mu.
func (p *pendingSet) count() int { return int(p.size.Load()) }

// merged removes the first n pending messages of session, now in messages. p.mu
// must be held.
func (p *pendingSet) merged(session string, n int) {
	s := p.bySession[session]
	for _, r := range s[:n] {
		p.release(r.b)
	}
	p.rows -= n
	p.size.Store(int64(p.rows))
	if n == len(s) {
		delete(p.bySession, session)
		return
	}
	s = append([]pendingRef(nil), s[n:]...) // let the merged prefix go
	p.bySession[session] = s
	p.aging.push(session, s[0].b.at)
}

// requeue queues the sessions again after a merge of them failed, so they stay due.
// p.mu must be held.
func (p *pendingSet) requeue(sessions []string) {
	for _, s := range sessions {
		refs := p.bySession[s]
		if len(refs) >= p.rowsDue {
			p.full = append(p.full, s)
		}
		if len(refs) > 0 {
			p.aging.push(s, refs[0].b.at)
		}
	}
}

// trimmed forgets the batch rows deleted (p.empty) and the emptied batches at the
// front of order. p.mu must be held.
func (p *pendingSet) trimmed() {
	clear(p.empty)
	p.empty = p.empty[:0]
	i := 0
	for i < len(p.order) && p.order[i].finished() {
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
	if p.aging.len() > 2*len(p.bySession)+1024 {
		p.aging.rebuild(p.bySession)
	}
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
	for n < p.budget {
		e, ok := p.aging.front()
		if !ok || now.Sub(e.at) < mergeAge {
			break
		}
		p.aging.pop()
		// A stale entry (the chat merged since) is skipped: the chat's current oldest
		// message has an entry of its own, further back.
		if s := p.bySession[e.session]; len(s) > 0 && now.Sub(s[0].b.at) >= mergeAge {
			take(e.session)
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
