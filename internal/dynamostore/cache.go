package dynamostore

import (
	"container/list"
	"hash/maphash"
	"sync"
)

// What a replica remembers of the sessions it appends to (see append.go), bounded in
// memory: at most maxCachedSessions sessions and maxRememberedIDs client ids in all.
// Past either bound the least recently used idle sessions are forgotten; forgetting
// costs that session one Query (loadWindow) on its next Append here, never correctness.
//
// A remembered client id is a 64-bit hash and a seq in a Go map, about 24 bytes with
// the map's overhead: 1M ids in 20,000 sessions take about 25 MB, one session's full
// window about 150 KB.
const (
	maxCachedSessions = 20000
	maxRememberedIDs  = 1 << 20
	// dedupeWindow is how many of a session's newest messages a replica keeps (and
	// reads when cold) for dedupe: a resend is recognised as long as fewer than this
	// many messages were stored after the original.
	dedupeWindow = 4096
)

// seqCache maps session ids to what this replica knows of them.
type seqCache struct {
	seed maphash.Seed // hashes client ids for this process only

	mu      sync.Mutex
	m       map[string]*sessionSeq
	lru     *list.List // of *sessionSeq, most recently used first
	ids     int        // sum of counted over m
	window  int
	maxSess int
	maxIDs  int
}

// sessionSeq is what this replica knows of one session. turn makes this replica's
// Appends to the session take turns; the fields after it belong to whoever holds the
// turn. The fields at the end are guarded by seqCache.mu.
type sessionSeq struct {
	turn   chan struct{} // holds one token during an Append; a channel so waiting heeds ctx
	known  bool          // last and ids were loaded
	last   int64         // highest seq known
	ids    map[uint64]int64
	shared bool // another replica appended lately: read the tail before writing
	window int64

	// guarded by seqCache.mu
	id       string
	users    int // Appends holding or waiting for the turn
	counted  int // len(ids) as added to seqCache.ids
	elem     *list.Element
	detached bool // forgotten while in use
}

func newSeqCache(window int) *seqCache {
	return &seqCache{
		seed: maphash.MakeSeed(), m: make(map[string]*sessionSeq), lru: list.New(),
		window: window, maxSess: maxCachedSessions, maxIDs: maxRememberedIDs,
	}
}

// acquire returns the session's entry, creating it, and counts the caller as a user
// until release.
func (c *seqCache) acquire(sessionID string) *sessionSeq {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[sessionID]
	if st == nil {
		st = &sessionSeq{turn: make(chan struct{}, 1), id: sessionID, window: int64(c.window), ids: make(map[uint64]int64)}
		st.elem = c.lru.PushFront(st)
		c.m[sessionID] = st
	} else {
		c.lru.MoveToFront(st.elem)
	}
	st.users++
	return st
}

// account updates the total of remembered client ids with st's; the caller holds
// st's turn.
func (c *seqCache) account(st *sessionSeq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.detached {
		c.ids += len(st.ids) - st.counted
		st.counted = len(st.ids)
	}
}

// release ends a use of st and forgets idle sessions while over the bounds.
func (c *seqCache) release(st *sessionSeq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.users--
	for e := c.lru.Back(); e != nil && (len(c.m) > c.maxSess || c.ids > c.maxIDs); {
		prev := e.Prev()
		if old := e.Value.(*sessionSeq); old.users == 0 {
			c.remove(old)
		}
		e = prev
	}
}

// forget drops what this replica knows of a session (after DeleteSession), so its next
// Append reads the session again. An Append in progress keeps its own copy.
func (c *seqCache) forget(sessionID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.m[sessionID]; st != nil {
		c.remove(st)
	}
}

func (c *seqCache) remove(st *sessionSeq) {
	c.lru.Remove(st.elem)
	delete(c.m, st.id)
	c.ids -= st.counted
	st.counted, st.detached = 0, true
}

// reset forgets what st knew; the next Append loads it again.
func (st *sessionSeq) reset() {
	st.known, st.last, st.shared = false, 0, false
	st.ids = make(map[uint64]int64)
}

// learn records that the message with clientID (hash h) is at seq, and trims client ids
// that fell out of the window.
func (st *sessionSeq) learn(clientID string, h uint64, seq int64) {
	st.last = max(st.last, seq)
	if clientID == "" {
		return
	}
	st.ids[h] = seq
	if int64(len(st.ids)) >= st.window+st.window/4 {
		for k, at := range st.ids {
			if at <= st.last-st.window {
				delete(st.ids, k)
			}
		}
	}
}
