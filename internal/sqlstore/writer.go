package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"parley/internal/chat"
	"parley/internal/metrics"
)

// Group commit. Every Append on MySQL, and every DeleteSession and (SQLite) End, is
// handed to one writer goroutine; an Append on SQLite is not (sqliteWriter.appendNow:
// the caller writes it to the message log under its chat's lock, with the same seq
// and dedupe rules as below), and the SQLite writer goroutine merges the pending
// messages into message_chunks on its tick.
// The writer takes the first waiting request, then everything else already waiting (up
// to maxBatch), writes them all in one transaction with prepared statements, commits,
// and only then answers each caller: an answer means durable. While a transaction
// commits, new requests queue up and form the next batch, so batches grow with load
// and a commit's fsync is shared by all of them. There is no goroutine per message.
//
// Seqs. A session's next seq is its last seq plus one, with no gaps and no repeats:
//
//   - SQLite: the file belongs to this process and a chat's messages are appended
//     only under its lock, so the writer remembers each session's last seq between
//     appends (loaded with the session's client ids on first use, see
//     sqlitecache.go). A failed append or batch forgets the sessions it touched.
//   - MySQL: several replicas append to the same session. Each batch transaction first
//     locks the row of every session it touches in message_seqs (creating it when
//     missing, in sorted order so two replicas cannot deadlock on each other's
//     sessions), reads last_seq under that lock, inserts, writes last_seq back and
//     commits. A replica appending to the same session waits for the lock and then
//     reads the committed value, so no cache survives a transaction. A deadlock or
//     lock-wait timeout reruns the whole batch. Each step is one statement for the
//     whole batch (writer_mysql.go).
//
// The loop (queue, batches, answers, reruns, metrics) is this file's writer; what a
// batch does in the database is its dialect's batchWriter: sqliteWriter
// (writer_sqlite.go, with sqlitecache.go, pending.go and chunks.go) or mysqlWriter
// (writer_mysql.go).
//
// Dedupe. SQLite: the writer remembers a hash of every client id of each session it
// appends to (see sqlitecache.go); a hit is confirmed by reading that row, so a hash
// collision costs a read, never a lost message. MySQL: the insert does nothing when
// (session_id, client_id) exists (ON DUPLICATE KEY UPDATE no-op, which reports 0 rows);
// then the batch reruns, first reading the stored rows of its client ids, and answers
// those as duplicates (writer_mysql.go). A repeat inside one batch is answered from
// the batch.
//
// Queue. Callers append to a slice under a mutex and nudge the writer; the writer swaps
// the slice out whole. A caller never waits for the writer to take its request, only
// for the answer, so a message costs one goroutine wake-up for its answer and none for
// its hand-over.
const (
	maxBatch          = 1000
	maxCachedSessions = 10000
	batchTimeout      = 30 * time.Second // MySQL
	maxBatchAttempts  = 5
	maxGather         = 4
)

// writeOp is what a request asks the writer to do.
type writeOp uint8

const (
	opAppend writeOp = iota + 1
	opDelete
	opEnd // SQLite: End goes through the writer, so the writer always knows what has ended
)

// request is one caller's Append or DeleteSession; pooled, so the hot path does not
// allocate one per message.
type request struct {
	op      writeOp
	in      chat.Message // message to append (SessionID alone for a delete; From, CreatedAt: who ended and when)
	out     chat.Message // stored message
	dup     bool
	deleted int64
	won     bool // opEnd: this request ended the chat
	err     error
	done    chan struct{} // buffered(1): the writer never waits for a caller
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

func newRequest(op writeOp) *request {
	r := requestPool.Get().(*request)
	r.op = op
	return r
}

// release clears r and returns it to the pool.
func (r *request) release() {
	done := r.done
	*r = request{done: done}
	requestPool.Put(r)
}

// msgKey identifies a message for dedupe within a batch.
type msgKey struct{ session, client string }

// writer is the single goroutine that writes messages: the group-commit loop shared by
// both dialects, around the dialect's batchWriter.
type writer struct {
	d       *DB
	dialect batchWriter
	quit    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	pending []*request    // requests not yet taken by the writer
	closed  bool          // set by stop: pending is refused from then on
	wake    chan struct{} // buffered(1): there may be pending requests

	inbox []*request // the requests taken from pending, committed maxBatch at a time
	batch []*request
	busy  bool // a batch was committed since the last idle tick

	// batches and batched count transactions and the requests they carried, so tests
	// and benchmarks can see that commits are shared.
	batches, batched atomic.Int64
	retries          atomic.Int64 // batch reruns after a lost lock race (MySQL)

	// metrics records each commit's size and time; set by SetMetrics, maybe while
	// the writer runs.
	metrics atomic.Pointer[metrics.Metrics]
}

// batchWriter is what one SQL dialect does with the writer's batches.
type batchWriter interface {
	// commitBatch writes batch in one transaction, filling in each request's answer
	// (out, dup, deleted, won, err). first is false when the batch reruns after a
	// failure the dialect called retryable.
	commitBatch(batch []*request, first bool) error
	// rolledBack forgets what the dialect remembered of the batch's sessions, whose
	// rows were just rolled back.
	rolledBack(batch []*request)
	// retryable reports whether a batch that failed with err is worth rerunning.
	retryable(err error) bool
	// idleEvery is how often idle is called while no batch was committed (0: never).
	idleEvery() time.Duration
	// committed follows each commit of what was pending; idle is called on quiet ticks.
	committed()
	idle()
	// close releases the prepared statements and connections, once the loop is done.
	close()
}

// SetMetrics makes the message writer record each group commit (batch size and
// commit time) in m. A nil m records nothing.
func (d *DB) SetMetrics(m *metrics.Metrics) {
	if d.w != nil {
		d.w.metrics.Store(m)
	}
}

// newWriter returns the writer of d's dialect, not yet running.
func newWriter(ctx context.Context, d *DB) (*writer, error) {
	w := &writer{d: d, quit: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	var err error
	if d.dialect == dialectSQLite {
		d.sw, err = newSQLiteWriter(ctx, w)
		w.dialect = d.sw
	} else {
		w.dialect, err = newMySQLWriter(ctx, d)
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// do hands r to the writer and waits for the answer. If ctx ends first, the caller
// leaves with an error (the write may still commit) and r is not reused.
func (w *writer) do(ctx context.Context, r *request) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		r.release()
		return chat.Errorf(chat.EUnavailable, "the message store is closed")
	}
	w.pending = append(w.pending, r)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a nudge is already waiting
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return chat.Wrap(chat.EUnavailable, ctx.Err(), "waiting for the message store")
	}
}

// end ends a chat in the writer's next batch (SQLite: see sqliteCache).
func (w *writer) end(ctx context.Context, session, by string, at time.Time) (bool, error) {
	r := newRequest(opEnd)
	r.in = chat.Message{SessionID: session, From: by, CreatedAt: at}
	if err := w.do(ctx, r); err != nil {
		return false, err
	}
	won, err := r.won, r.err
	r.release()
	return won, err
}

// stop makes the writer commit what is queued and exit, and waits for it.
func (w *writer) stop() {
	close(w.quit)
	<-w.done
	w.dialect.close()
}

// run is the writer loop: wait for a nudge, take everything pending, commit it.
func (w *writer) run() {
	defer close(w.done)
	var idle <-chan time.Time // nil, never ready, when the dialect has no idle work
	if every := w.dialect.idleEvery(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case <-w.wake:
			w.gather()
			w.take(false)
		case <-idle:
			if !w.busy {
				w.dialect.idle()
			}
			w.busy = false
			continue
		case <-w.quit:
			w.take(true) // refuses anything later, so nothing is left unanswered
			w.commitInbox()
			return
		}
		w.commitInbox()
		w.busy = true
		w.dialect.committed()
	}
}

// gather lets the senders already running hand in their requests before the batch
// is taken (chat.Gather): under load the batch grows and one commit serves more.
func (w *writer) gather() { chat.Gather(w.pendingLen, maxGather) }

// pendingLen is the number of requests not yet taken.
func (w *writer) pendingLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// waiting reports whether requests are waiting for the writer.
func (w *writer) waiting() bool { return len(w.wake) > 0 }

// take moves the pending requests to the inbox; last closes the queue behind them.
func (w *writer) take(last bool) {
	w.mu.Lock()
	w.inbox, w.pending = w.pending, w.inbox[:0]
	w.closed = w.closed || last
	w.mu.Unlock()
}

// commitInbox commits the inbox in batches of at most maxBatch.
func (w *writer) commitInbox() {
	for i := 0; i < len(w.inbox); i += maxBatch {
		w.batch = append(w.batch[:0], w.inbox[i:min(i+maxBatch, len(w.inbox))]...)
		w.flush()
	}
	clear(w.inbox) // the callers own their requests again
	w.inbox = w.inbox[:0]
}

// flush commits the batch and answers every caller in it.
func (w *writer) flush() {
	start := time.Now()
	err := w.commit()
	if err == nil {
		w.metrics.Load().StoreCommitted(len(w.batch), time.Since(start))
	}
	w.batches.Add(1)
	w.batched.Add(int64(len(w.batch)))
	for i, r := range w.batch {
		if err != nil {
			r.err = err
		}
		r.done <- struct{}{}
		w.batch[i] = nil
	}
}

// commit writes the batch, rerunning it while the dialect calls the failure retryable
// (MySQL: a lost lock race), at most maxBatchAttempts times.
func (w *writer) commit() error {
	for attempt := 1; ; attempt++ {
		err := w.dialect.commitBatch(w.batch, attempt == 1)
		if err == nil {
			return nil
		}
		w.dialect.rolledBack(w.batch)
		if w.dialect.retryable(err) && attempt < maxBatchAttempts {
			w.retries.Add(1)
			continue
		}
		w.d.log.Error("message batch failed", "messages", len(w.batch), "attempts", attempt, "err", err)
		return dbErr(err, "store messages")
	}
}

// stmtList names prepared statements and their SQL, so that a dialect's statements
// are prepared, bound to a transaction and closed by one loop each.
type stmtList []struct {
	dst   **sql.Stmt
	query string
}

// prepare prepares every statement on db: the pool (*sql.DB) or one connection (*sql.Conn).
func (l stmtList) prepare(ctx context.Context, db interface {
	PrepareContext(context.Context, string) (*sql.Stmt, error)
}) error {
	for _, p := range l {
		var err error
		if *p.dst, err = db.PrepareContext(ctx, p.query); err != nil {
			return err
		}
	}
	return nil
}

// bindTo sets each statement of dst, a list of the same statements of another
// value, to the statement of l bound to tx.
func (l stmtList) bindTo(ctx context.Context, tx *sql.Tx, dst stmtList) {
	for i := range l {
		*dst[i].dst = tx.StmtContext(ctx, *l[i].dst)
	}
}

// close closes the prepared statements.
func (l stmtList) close() {
	for _, p := range l {
		if *p.dst != nil {
			_ = (*p.dst).Close()
		}
	}
}

// refuseAfterEnd answers a message for an ended chat from the outcome of reading the
// session's message with the same client id into r.out: a resend of a message stored
// before the end gets its original answer; anything new is refused with EChatEnded.
func refuseAfterEnd(err error, r *request) error {
	if errors.Is(err, sql.ErrNoRows) {
		r.err = chat.Errorf(chat.EChatEnded, "This chat has ended; no more messages can be sent.")
		return nil
	}
	r.dup = err == nil
	return err
}

// execCount runs st with args and returns how many rows it changed.
func execCount(ctx context.Context, st *sql.Stmt, args ...any) (int64, error) {
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
