package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"parley/internal/chat"
)

// eachPending calls fn with each of the session's pending messages as this batch
// sees them, in seq order, until fn returns false: the committed ones (unless this
// batch deleted the session), then this batch's own.
func (w *sqliteWriter) eachPending(session string, fn func(*chat.Message) bool) {
	from := 0
	for i, op := range w.ops {
		if op.batch == nil && op.drop == session {
			from = i + 1
		}
	}
	if from == 0 {
		for _, r := range w.pending.bySession[session] {
			if !fn(r.m) {
				return
			}
		}
	}
	for _, op := range w.ops[from:] {
		if op.batch == nil {
			continue
		}
		for i := range op.batch.msgs {
			if m := &op.batch.msgs[i]; m.SessionID == session && !fn(m) {
				return
			}
		}
	}
	for _, r := range w.rows {
		if r.out.SessionID == session && !fn(&r.out) {
			return
		}
	}
}

// pendingMessage returns the session's pending message that match reports, or nil.
func (w *sqliteWriter) pendingMessage(session string, match func(*chat.Message) bool) *chat.Message {
	var found *chat.Message
	w.eachPending(session, func(m *chat.Message) bool {
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
	w.nextID = p.nextID
	return rows.Err()
}

// mergeIfDue merges the chats that are due (pendingSet.due), or (idle) every chat,
// one merge at a time while no append waits.
func (w *sqliteWriter) mergeIfDue(idle bool) {
	p := w.pending
	for {
		sessions := p.due(idle, time.Now())
		if len(sessions) == 0 && len(p.empty) == 0 {
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
			for _, s := range sessions {
				if len(p.bySession[s]) >= p.rowsDue {
					p.full = append(p.full, s)
				}
			}
			return
		}
		p.resize(moved, took)
		if !idle || len(p.bySession) == 0 || w.loop.waiting() {
			return // one merge under load; appends waiting come first
		}
	}
}

// merge moves every pending message of the sessions into message_chunks and deletes the
// batch rows left with none, in one transaction; it returns how many it moved.
func (w *sqliteWriter) merge(sessions []string) (int, error) {
	p := w.pending
	slices.Sort(sessions)
	var msgs []*chat.Message
	counts := make([]int, len(sessions))
	for i, s := range sessions {
		for _, r := range p.bySession[s] {
			msgs = append(msgs, r.m)
		}
		counts[i] = len(p.bySession[s])
	}
	// The batch rows this merge empties: the pending ones (drops), and those whose
	// every message left is in this merge.
	empty := slices.Clone(p.empty)
	left := make(map[*pendingBatch]int)
	for _, s := range sessions {
		for _, r := range p.bySession[s] {
			if left[r.b]++; left[r.b] == r.b.left {
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
	if len(p.dropped) > 0 && len(empty) > 0 {
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
	for _, b := range p.order {
		if b.left > merging[b] {
			oldest = b.id
			break
		}
	}
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
