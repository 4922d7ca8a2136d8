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
// returns false. Its callers hold the chat's lock, so no append adds to the list
// meanwhile, and a merge replaces the list rather than change it: the list is taken
// under its shard's lock and read after.
func (w *sqliteWriter) eachCommitted(session string, fn func(*chat.Message) bool) {
	for _, r := range w.pending.list(session) {
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
		p.rows.dropped[s] = max(p.rows.dropped[s], through)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if rows, err = w.prepared.batches.QueryContext(ctx); err != nil {
		return err
	}
	defer rows.Close()
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
		sessions := p.due(idle, time.Now())
		if len(sessions) == 0 && len(p.rows.empty) == 0 {
			return
		}
		start := time.Now()
		moved, err := w.merge(sessions)
		took := time.Since(start)
		w.loop.metrics.Load().StoreMerged(took)
		if err != nil {
			// The messages stay pending, where every read still finds them; the next
			// merge tries again.
			w.d.log.Warn("moving pending messages into messages failed; will retry", "err", err)
			p.requeue(sessions)
			return
		}
		p.resize(moved, took)
		if !idle || w.loop.waiting() || p.count() == 0 {
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
	// What the merge takes is each chat's list as it is now, taken under its shard's
	// lock: appends add to it meanwhile, past the part taken, and only this goroutine
	// (the writer's) replaces a list or changes what the part taken holds, so the part
	// is read after the lock is let go, which appends would otherwise wait for.
	taken := time.Now()
	refs := make([][]pendingRef, len(sessions))
	for i, s := range sessions {
		refs[i] = p.list(s)
	}
	var empty []int64                // the batch rows (message_pending) this merge empties
	for _, b := range p.rows.empty { // emptied already (drops)
		empty = append(empty, b.id)
	}
	dropped := len(p.rows.dropped) > 0
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
	w.unlive(p.released(p.merged(sessions, counts, taken)))
	p.trimmed()
	w.merges.Add(1)
	return len(msgs), nil
}

// trimDrops deletes the drop marks that no batch row left covers: those through an
// id below the oldest batch with messages left after this merge (merging: the
// messages per batch the merge moves).
func (w *sqliteWriter) trimDrops(ctx context.Context, merging map[*pendingBatch]int) error {
	p := w.pending
	oldest := int64(0)
	for _, b := range p.rows.order {
		if b.left > merging[b] {
			oldest = b.id
			break
		}
	}
	for s, through := range p.rows.dropped {
		if oldest == 0 || through < oldest {
			if _, err := w.prepared.trimDrop.ExecContext(ctx, s, through); err != nil {
				return err
			}
			delete(p.rows.dropped, s) // a rollback leaves the mark in the table only: harmless
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
				b = &pendingBatch{at: now, seg: segs[r.seg]}
				batches[r.seg] = b
			}
			b.msgs = append(b.msgs, r.m)
		}
	}
	for _, id := range ids { // oldest segment first, so each chat's messages stay in seq order
		if b := batches[id]; b != nil {
			p.add(b)
		}
	}
	return w.log.start(seen)
}

// unlive counts the records of merged or dropped messages out of their log segments
// (segs from pendingSet.released), once the transaction that stored or deleted them
// has committed: a segment none is left live in may be deleted after the next
// checkpoint.
func (w *sqliteWriter) unlive(segs map[*logSegment]int) {
	if len(segs) == 0 {
		return
	}
	w.lmu.Lock()
	for s, n := range segs {
		s.live -= n
	}
	w.lmu.Unlock()
}
