package sqlstore

import (
	"hash/maphash"
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
// here, in memory (pendingSet), grouped in batches of up to logBatch messages. The
// set is split in shards by chat, each with its own lock, so appends to different
// chats seldom wait for one another; a log segment counts the messages of its that
// are neither merged nor dropped (logSegment.live), under the log's lock.
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
	// maxPending bounds the messages held in memory, each shard its share: past it
	// (merges failing), a shard's chats are refused new messages with EUnavailable
	// until a merge succeeds.
	maxPending = 1 << 20
)

// pendingBatch is a group of pending messages: one row of message_pending (written
// by an earlier version, read back at start), the messages of one log segment read
// back at start, or up to logBatch consecutive messages of one shard's appends
// (pendingShard.open), which fill it in place.
type pendingBatch struct {
	id   int64     // a message_pending row's id
	at   time.Time // when it was read back (rows and replayed segments)
	msgs []chat.Message
	left int         // a message_pending row's messages neither merged nor dropped
	seg  *logSegment // the log segment holding its messages; nil for a message_pending row
}

// logBatch is how many messages an appends' batch holds: allocated at once, so the
// pointers into it stay put while appenders fill it.
const logBatch = 256

// pendingRef is one pending message of a chat and the batch that holds it.
type pendingRef struct {
	m *chat.Message
	b *pendingBatch
}

// pendingList is one chat's pending messages, in seq order, and when its oldest came
// (about: a message that came during a merge counts from the merge's start).
type pendingList struct {
	refs  []pendingRef
	since time.Time
}

// pendingShards is how many parts the pending set splits its chats into, each with
// its own lock, so appends to different chats seldom wait for one another here.
const pendingShards = 32

// pendingSet is the pending messages in memory, in shards by chat. The writer
// changes what is in them, always under the shard's lock after the transaction that
// made the change committed; appends add to them, and readers read them, under the
// shard's lock. What a merge takes out of a chat's list only the writer goroutine
// changes, so it reads what it takes without the lock.
type pendingSet struct {
	seed    maphash.Seed
	shards  [pendingShards]pendingShard
	rowsDue int // mergeRows; tests lower it before the first message

	// The writer goroutine's alone.
	budget int  // messages one merge moves at most
	fixed  bool // tests: keep budget as set
	turn   int  // the shard due looks at first, turning so no shard's chats always come first
	rows   legacyRows
}

// pendingShard is the pending messages of the chats whose id hashes to it.
type pendingShard struct {
	mu    sync.Mutex
	chats map[string]pendingList // each chat's pending messages
	open  *pendingBatch          // the batch its appends fill (addLogged)
	full  []string               // chats that reached rowsDue since their last merge (maybe stale)
	aging agingQueue             // chats by when their oldest pending message came (maybe stale)
	n     atomic.Int64           // its pending messages: changed under mu, read without it
	_     [40]byte               // a cache line or two each, so shards' locks do not share one
}

// legacyRows is what the message_pending rows an earlier version wrote need: read
// back and merged at start, before anything is served.
type legacyRows struct {
	order   []*pendingBatch  // rows with messages left, oldest first (emptied ones leave from the front)
	empty   []*pendingBatch  // rows emptied since the last merge (to delete)
	dropped map[string]int64 // chat → last row id its drop mark covers
}

func newPendingSet() *pendingSet {
	p := &pendingSet{seed: maphash.MakeSeed(), budget: mergeFirst, rowsDue: mergeRows}
	p.rows = legacyRows{dropped: make(map[string]int64)}
	for i := range p.shards {
		p.shards[i].chats = make(map[string]pendingList)
	}
	return p
}

// shard returns the shard of session's chat.
func (p *pendingSet) shard(session string) *pendingShard { return &p.shards[p.shardIndex(session)] }

// shardIndex returns the index of session's shard.
func (p *pendingSet) shardIndex(session string) uint64 {
	return maphash.String(p.seed, session) % pendingShards
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

// agingEntry is a chat and when its oldest pending message came (its list's since).
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

// rebuild queues each chat of chats once, oldest first: stale entries pile up where
// merges find chats by other ways (mergeRows, idle), and are dropped here.
func (q *agingQueue) rebuild(chats map[string]pendingList) {
	clear(q.list)
	q.list, q.head = q.list[:0], 0
	for s, l := range chats {
		q.list = append(q.list, agingEntry{s, l.since})
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

// add adds a batch read back at start (a message_pending row, or a log segment's
// messages, which count as live in it). The writer goroutine's.
func (p *pendingSet) add(b *pendingBatch) {
	if b.seg != nil {
		b.seg.live += len(b.msgs)
	} else {
		b.left = len(b.msgs)
		if b.left == 0 {
			p.rows.empty = append(p.rows.empty, b)
		} else {
			p.rows.order = append(p.rows.order, b)
		}
	}
	for i := range b.msgs {
		m := &b.msgs[i]
		sh := p.shard(m.SessionID)
		sh.mu.Lock()
		sh.add(m.SessionID, pendingRef{m, b}, b.at, p.rowsDue)
		sh.mu.Unlock()
	}
}

// add appends ref to session's pending messages; since is when it came, zero for
// now (the clock is read only for a chat's first pending message). sh.mu must be
// held.
func (sh *pendingShard) add(session string, ref pendingRef, since time.Time, rowsDue int) {
	l := sh.chats[session]
	if len(l.refs) == 0 {
		if since.IsZero() {
			since = time.Now()
		}
		l.since = since
		sh.aging.push(session, since)
	}
	l.refs = append(l.refs, ref)
	sh.chats[session] = l
	if len(l.refs) == rowsDue {
		sh.full = append(sh.full, session)
	}
	sh.n.Store(sh.n.Load() + 1)
}

// addLogged adds m, just written to the log's segment seg (which counts it live), to
// the shard sh of its chat: to sh's open batch, or a new one when there is none, it
// is full or it holds another segment's messages. sh.mu must be held.
func (p *pendingSet) addLogged(sh *pendingShard, m *chat.Message, seg *logSegment) {
	b := sh.open
	if b == nil || len(b.msgs) == cap(b.msgs) || b.seg != seg {
		b = &pendingBatch{msgs: make([]chat.Message, 0, logBatch), seg: seg}
		sh.open = b
	}
	b.msgs = append(b.msgs, *m)
	sh.add(m.SessionID, pendingRef{&b.msgs[len(b.msgs)-1], b}, time.Time{}, p.rowsDue)
}

// isFull reports whether sh holds its share of maxPending messages.
func (sh *pendingShard) isFull() bool { return sh.n.Load() >= maxPending/pendingShards }

// count returns how many messages are pending.
func (p *pendingSet) count() int {
	n := int64(0)
	for i := range p.shards {
		n += p.shards[i].n.Load()
	}
	return int(n)
}

// list returns session's pending messages as they are now; the writer goroutine
// reads them after letting the lock go (what is in them it alone changes).
func (p *pendingSet) list(session string) []pendingRef {
	sh := p.shard(session)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.chats[session].refs
}

// drop forgets a chat's pending messages (deleted) and returns them, for release.
// The writer goroutine's.
func (p *pendingSet) drop(session string) []pendingRef {
	sh := p.shard(session)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	refs := sh.chats[session].refs
	delete(sh.chats, session)
	sh.n.Store(sh.n.Load() - int64(len(refs)))
	return refs
}

// merged removes the first counts[i] pending messages of each chat sessions[i],
// now in message_chunks, and returns them, for release. Messages left came during
// the merge, which began at taken. The writer goroutine's.
func (p *pendingSet) merged(sessions []string, counts []int, taken time.Time) []pendingRef {
	var byShard [pendingShards][]int
	for i, s := range sessions {
		k := p.shardIndex(s)
		byShard[k] = append(byShard[k], i)
	}
	var out []pendingRef
	for k, idx := range byShard {
		if len(idx) == 0 {
			continue
		}
		sh := &p.shards[k]
		sh.mu.Lock()
		for _, i := range idx {
			out = append(out, sh.merged(sessions[i], counts[i], taken)...)
		}
		sh.mu.Unlock()
	}
	return out
}

// merged removes the first n of session's pending messages and returns them. sh.mu
// must be held.
func (sh *pendingShard) merged(session string, n int, taken time.Time) []pendingRef {
	l := sh.chats[session]
	sh.n.Store(sh.n.Load() - int64(n))
	if n == len(l.refs) {
		delete(sh.chats, session)
		return l.refs
	}
	out := l.refs[:n]
	l.refs = append([]pendingRef(nil), l.refs[n:]...) // let the merged prefix go
	l.since = taken
	sh.chats[session] = l
	sh.aging.push(session, taken)
	return out
}

// released counts the messages of refs merged or dropped in their message_pending
// rows, and returns how many each log segment had. The writer goroutine's.
func (p *pendingSet) released(refs []pendingRef) map[*logSegment]int {
	segs := make(map[*logSegment]int)
	for _, r := range refs {
		if b := r.b; b.seg != nil {
			segs[b.seg]++
		} else if b.left--; b.left == 0 {
			p.rows.empty = append(p.rows.empty, b)
		}
	}
	return segs
}

// requeue queues the sessions again after a merge of them failed, so they stay due.
func (p *pendingSet) requeue(sessions []string) {
	for _, s := range sessions {
		sh := p.shard(s)
		sh.mu.Lock()
		if l := sh.chats[s]; len(l.refs) > 0 {
			if len(l.refs) >= p.rowsDue {
				sh.full = append(sh.full, s)
			}
			sh.aging.push(s, l.since)
		}
		sh.mu.Unlock()
	}
}

// trimmed forgets the message_pending rows deleted (rows.empty) and the emptied rows
// at the front of rows.order. The writer goroutine's.
func (p *pendingSet) trimmed() {
	r := &p.rows
	clear(r.empty)
	r.empty = r.empty[:0]
	i := 0
	for i < len(r.order) && r.order[i].left == 0 {
		i++
	}
	clear(r.order[:i])
	r.order = r.order[i:]
	if len(r.order) == 0 {
		r.order = nil
	}
}

// live reports whether m, in message_pending row id, belongs to a chat not dropped
// since.
func (p *pendingSet) live(m *chat.Message, id int64) bool {
	through, ok := p.rows.dropped[m.SessionID]
	return !ok || id > through
}

// after copies up to limit of the chat's pending messages with seq > after, and
// reports whether they are all of the chat's messages after it: true when the chat
// has pending messages and the oldest is no newer than after+1 (everything older is in
// messages, everything newer is pending).
func (p *pendingSet) after(session string, after int64, limit int) ([]chat.Message, bool) {
	sh := p.shard(session)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.chats[session].refs
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
	sh := p.shard(session)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := sh.chats[session].refs; len(s) > 0 {
		return s[len(s)-1].m.Seq
	}
	return 0
}

// due returns the chats to merge now, at most about budget messages: those that
// reached mergeRows, then those whose oldest pending message waited mergeAge; every
// chat when idle. The writer goroutine's.
func (p *pendingSet) due(idle bool, now time.Time) []string {
	var out []string
	n := 0
	seen := make(map[string]bool)
	take := func(l pendingList, s string) {
		if len(l.refs) > 0 && !seen[s] {
			seen[s] = true
			out = append(out, s)
			n += len(l.refs)
		}
	}
	// Each pass looks at every shard, from the turn's, while the budget lasts.
	pass := func(look func(sh *pendingShard)) {
		for i := 0; i < pendingShards && n < p.budget; i++ {
			sh := &p.shards[(p.turn+i)%pendingShards]
			sh.mu.Lock()
			look(sh)
			sh.mu.Unlock()
		}
	}
	p.turn = (p.turn + 1) % pendingShards
	if idle {
		pass(func(sh *pendingShard) {
			for s, l := range sh.chats {
				if take(l, s); n >= p.budget {
					return
				}
			}
		})
		return out
	}
	pass(func(sh *pendingShard) {
		for len(sh.full) > 0 && n < p.budget {
			s := sh.full[0]
			sh.full = sh.full[1:]
			take(sh.chats[s], s)
		}
	})
	pass(func(sh *pendingShard) {
		if sh.aging.len() > 2*len(sh.chats)+1024/pendingShards {
			sh.aging.rebuild(sh.chats)
		}
		for n < p.budget {
			e, ok := sh.aging.front()
			if !ok || now.Sub(e.at) < mergeAge {
				return
			}
			sh.aging.pop()
			// A stale entry (the chat merged since) is skipped: the chat's current
			// oldest message has an entry of its own, further back.
			if l := sh.chats[e.session]; len(l.refs) > 0 && now.Sub(l.since) >= mergeAge {
				take(l, e.session)
			}
		}
	})
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
