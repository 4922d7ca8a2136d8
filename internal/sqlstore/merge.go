package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"parley/internal/chat"
)

// eachPending calls fn with each of the session's pending messages as this batch
// sees them, in seq order, until fn returns false: none once this batch deleted the
// session. (Appends never run in a batch: the batch holds the chat's lock.)
func (w *sqliteWriter) eachPending(session string, fn func(*chat.Message) bool) {
	if !slices.Contains(w.drops, session) {
		w.eachCommitted(session, fn)
	}
}

// eachCommitted calls fn with the session's pending messages in seq order until fn
// returns false. Merges change the pending messages beside the appends, so it holds
// pending.mu for reading.
func (w *sqliteWriter) eachCommitted(session string, fn func(*chat.Message) bool) {
	w.pending.mu.RLock()
	defer w.pending.mu.RUnlock()
	for _, r := range w.pending.bySession[session] {
		if !fn(r.m) {
			return
		}
	}
}

// pendingMessage returns the session's pending message that match reports, or nil.
// Appends call it, holding the chat's lock.
func (w *sqliteWriter) pendingMessage(session string, match func(*chat.Message) bool) *chat.Message {
	var found *chat.Message
	w.eachCommitted(session, func(m *chat.Message) bool {
		if match(m) {
			found = m
			return false
		}
		return true
	})
	return found
}

// loadPending reads message_pending back into memory (at start: a crash or a stop
// leaves batches there).
func (w *sqliteWriter) loadPending(ctx context.Context) error {
	p := w.pending
	rows, err := w.prepared.drops.QueryContext(ctx)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		var through int64
		if err := rows.Scan(&s, &through); err != nil {
			rows.Close()
			return err
		}
		p.dropped[s] = max(p.dropped[s], through)
		// New batch rows get ids above every mark's, so no mark can cover them.
		p.nextID = max(p.nextID, through+1)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if rows, err = w.prepared.batches.QueryContext(ctx); err != nil {
		return err
	}
	defer rows.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for rows.Next() {
		var id int64
		var blob []byte
		if err := rows.Scan(&id, &blob); err != nil {
			return err
		}
		msgs, err := decodePending(blob)
		if err != nil {
			return fmt.Errorf("message_pending row %d: %w", id, err)
		}
		b := &pendingBatch{id: id, at: now, msgs: msgs[:0]}
		for _, m := range msgs {
			if p.live(&m, id) {
				b.msgs = append(b.msgs, m)
			}
		}
		p.add(b)
	}
	return rows.Err()
}

// mergeIfDue merges the chats that are due (pendingSet.due), or (idle) every chat,
// one merge at a time while no append waits.
func (w *sqliteWriter) mergeIfDue(idle bool) {
	p := w.pending
	for range maxMergesPerTick {
		p.mu.Lock()
		sessions := p.due(idle, time.Now())
		empty := len(p.empty)
		p.mu.Unlock()
		if len(sessions) == 0 && empty == 0 {
			return
		}
		start := time.Now()
		moved, err := w.merge(sessions)
		took := time.Since(start)
		w.loop.metrics.Load().StoreMerged(took)
		p.mu.Lock()
		if err != nil {
			// The messages stay pending, where every read still finds them; the next
			// merge tries again.
			w.d.log.Warn("moving pending messages into messages failed; will retry", "err", err)
			p.requeue(sessions)
			p.mu.Unlock()
			return
		}
		p.resize(moved, took)
		left := len(p.bySession)
		p.mu.Unlock()
		if !idle || left == 0 || w.loop.waiting() {
			return // one merge a tick under load; an End or a delete waiting comes first
		}
	}
}

// maxMergesPerTick bounds the merges of one tick of the writer, so an End or a
// delete waits for a few at most.
const maxMergesPerTick = 16

// merge moves every pending message of the sessions into message_chunks and deletes the
// batch rows left with none, in one transaction; it returns how many it moved.
func (w *sqliteWriter) merge(sessions []string) (int, error) {
	p := w.pending
	slices.Sort(sessions)
	// What the merge takes is each chat's list as it is now, read under pending.mu:
	// appends add to it meanwhile, past the part taken, and only this goroutine (the
	// writer's) replaces a list or changes what the part taken holds, so the part is
	// read after the lock is let go, which appends would otherwise wait for.
	refs := make([][]pendingRef, len(sessions))
	var empty []int64 // the batch rows (message_pending) this merge empties
	p.mu.RLock()
	for i, s := range sessions {
		refs[i] = p.bySession[s]
	}
	for _, b := range p.empty { // emptied already (drops)
		empty = append(empty, b.id)
	}
	dropped := len(p.dropped) > 0
	p.mu.RUnlock()
	var msgs []*chat.Message
	counts := make([]int, len(sessions))
	left := make(map[*pendingBatch]int)
	for i, rs := range refs {
		counts[i] = len(rs)
		for _, r := range rs {
			msgs = append(msgs, r.m)
			// A batch row every message left of is in this merge is emptied too. (A
			// row's count changes only on this goroutine; a log batch's, which
			// appends fill, is not read.)
			if left[r.b]++; r.b.seg == nil && left[r.b] == r.b.left {
				empty = append(empty, r.b.id)
			}
		}
	}
	ctx := context.Background()
	tx, err := w.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	add := w.prepared.addChunk
	for rest := msgs; len(rest) > 0; {
		run := 1
		for run < len(rest) && rest[run].SessionID == rest[0].SessionID {
			run++
		}
		if err := w.addChunks(ctx, add, rest[:run]); err != nil {
			return 0, err
		}
		rest = rest[run:]
	}
	trim := w.prepared.trimBatch
	for _, id := range empty {
		if _, err := trim.ExecContext(ctx, id); err != nil {
			return 0, err
		}
	}
	if dropped && len(empty) > 0 {
		if err := w.trimDrops(ctx, left); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	p.mu.Lock()
	for i, s := range sessions {
		p.merged(s, counts[i])
	}
	p.trimmed()
	p.mu.Unlock()
	w.merges.Add(1)
	return len(msgs), nil
}

// trimDrops deletes the drop marks that no batch row left covers: those through an
// id below the oldest batch with messages left after this merge (merging: the
// messages per batch the merge moves).
func (w *sqliteWriter) trimDrops(ctx context.Context, merging map[*pendingBatch]int) error {
	p := w.pending
	oldest := int64(0)
	p.mu.RLock()
	for _, b := range p.order {
		if b.left > merging[b] {
			oldest = b.id
			break
		}
	}
	p.mu.RUnlock()
	for s, through := range p.dropped {
		if oldest == 0 || through < oldest {
			if _, err := w.prepared.trimDrop.ExecContext(ctx, s, through); err != nil {
				return err
			}
			delete(p.dropped, s) // a rollback leaves the mark in the table only: harmless
		}
	}
	return nil
}

// replayLog reads the message log back into memory (at start: a crash or a stop
// leaves records there) and begins a new segment. A chat's records before its last
// drop record are dead; of the rest, those a merge already stored (seq at most the
// chat's last stored seq) are skipped, so a segment not yet deleted after its merges
// brings back nothing twice.
func (w *sqliteWriter) replayLog(ctx context.Context) error {
	type rec struct {
		seg int64
		m   chat.Message
	}
	bySession := make(map[string][]rec)
	var order []string // sessions in order of their first live record
	ids, err := w.log.replay(func(seg int64, m chat.Message) {
		if _, ok := bySession[m.SessionID]; !ok {
			order = append(order, m.SessionID)
		}
		bySession[m.SessionID] = append(bySession[m.SessionID], rec{seg, m})
	}, func(_ int64, session string) {
		if _, ok := bySession[session]; ok {
			bySession[session] = bySession[session][:0]
		}
	})
	if err != nil {
		return err
	}
	segs := make(map[int64]*logSegment, len(ids))
	seen := make([]*logSegment, 0, len(ids))
	batches := make(map[int64]*pendingBatch, len(ids))
	for _, id := range ids {
		segs[id] = &logSegment{id: id}
		seen = append(seen, segs[id])
	}
	last, err := w.d.prepared(ctx, sqliteChunkLast)
	if err != nil {
		return err
	}
	now := time.Now()
	p := w.pending
	for _, s := range order {
		recs := bySession[s]
		if len(recs) == 0 {
			continue
		}
		var stored int64
		if err := last.QueryRowContext(ctx, s).Scan(&stored); err != nil {
			return err
		}
		for _, r := range recs {
			if r.m.Seq <= stored {
				continue
			}
			b := batches[r.seg]
			if b == nil {
				b = &pendingBatch{id: p.nextID, at: now, seg: segs[r.seg]}
				p.nextID++
				batches[r.seg] = b
			}
			b.msgs = append(b.msgs, r.m)
		}
	}
	p.mu.Lock()
	for _, id := range ids { // oldest segment first, so each chat's messages stay in seq order
		if b := batches[id]; b != nil {
			p.add(b)
		}
	}
	p.mu.Unlock()
	return w.log.start(seen)
}
