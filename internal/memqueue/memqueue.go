// Package memqueue is the embedded job queue: export tasks run by a small pool of
// goroutines in this process, retried with capped exponential backoff, and the nightly
// purge on a cron schedule with an explicit time zone. It keeps nothing on disk, and
// needs not: the session row in StatusEnding is the durable record of export work, and
// the transcript Sweeper enqueues such sessions again at start and every few minutes,
// so a restart loses no work. A missed nightly purge is caught up by the next one,
// since a purge takes everything due.
package memqueue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/robfig/cron/v3"

	"parley/internal/chat"
)

var _ chat.Queue = (*Queue)(nil)

// Defaults for zero Options.
const (
	DefaultWorkers       = 2
	DefaultRetryBase     = time.Second
	DefaultRetryMax      = 5 * time.Minute
	DefaultPurgeSchedule = "59 23 * * *"
)

// Options configure a Queue. Zero values get the defaults above (Location: UTC).
type Options struct {
	Workers   int           // export tasks run at once
	RetryBase time.Duration // first retry delay after a temporary failure
	RetryMax  time.Duration // cap on the retry delay (jitter ±50% around it)

	// PurgeSchedule is a 5-field cron spec ("59 23 * * *") or a descriptor such as
	// "@daily" or "@every 1h", read in Location. "-" turns the schedule off (a
	// process that only serves, when another runs the jobs).
	PurgeSchedule string
	Location      *time.Location
	// Schedule, when set, replaces PurgeSchedule (tests use sub-second schedules).
	Schedule cron.Schedule

	Now    func() time.Time // the purge's "now"; chat.Now when nil
	Logger *slog.Logger
}

// taskState is where an export task is.
type taskState int

const (
	stateReady   taskState = iota // waiting for a worker
	stateRunning                  // a worker runs it
	stateBackoff                  // failed; waiting for its retry delay
)

// task is one session's export, from enqueue until it succeeds or fails for good.
type task struct {
	state   taskState
	backoff *backoff.ExponentialBackOff
	timer   *time.Timer
	tries   int
}

// Queue runs export tasks and the purge schedule in process.
type Queue struct {
	jobs  chat.Jobs
	o     Options
	sched cron.Schedule
	log   *slog.Logger

	mu      sync.Mutex
	tasks   map[string]*task // by session id: pending, running or backing off
	ready   []string         // FIFO of tasks waiting for a worker
	wake    chan struct{}
	started bool
	closed  bool

	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup
	cron    *cron.Cron
	purging atomic.Bool
}

// New returns a stopped Queue running jobs; call Start to run tasks and the schedule.
func New(jobs chat.Jobs, o Options) (*Queue, error) {
	if jobs == nil {
		return nil, chat.Errorf(chat.EInvalid, "memqueue: jobs are required")
	}
	o = withDefaults(o)
	sched, err := parseSchedule(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{
		jobs: jobs, o: o, sched: sched, log: o.Logger,
		tasks: make(map[string]*task), wake: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel,
	}, nil
}

// withDefaults fills zero Options.
func withDefaults(o Options) Options {
	chat.SetDefault(&o.Workers, DefaultWorkers)
	chat.SetDefault(&o.RetryBase, DefaultRetryBase)
	if o.RetryMax < o.RetryBase {
		o.RetryMax = max(DefaultRetryMax, o.RetryBase)
	}
	if o.PurgeSchedule == "" {
		o.PurgeSchedule = DefaultPurgeSchedule
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Now == nil {
		o.Now = chat.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// parseSchedule returns the purge schedule, nil when it is turned off.
func parseSchedule(o Options) (cron.Schedule, error) {
	if o.Schedule != nil {
		return o.Schedule, nil
	}
	if o.PurgeSchedule == "-" {
		return nil, nil
	}
	s, err := cron.ParseStandard(o.PurgeSchedule)
	if err != nil {
		return nil, chat.Wrap(chat.EInvalid, err, "invalid purge schedule %q", o.PurgeSchedule)
	}
	return s, nil
}

// Start runs the workers and the purge schedule until Close or until ctx is done.
// Tasks enqueued before Start wait for it. Calling Start again does nothing.
func (q *Queue) Start(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed {
		return
	}
	q.started = true
	stop := context.AfterFunc(ctx, q.cancel)
	go func() { <-q.ctx.Done(); stop() }()
	for range q.o.Workers {
		q.workers.Add(1)
		go q.work()
	}
	if len(q.ready) > 0 {
		q.signal()
	}
	q.startSchedule()
}

// startSchedule starts the cron runner for the purge, if there is a schedule.
func (q *Queue) startSchedule() {
	if q.sched == nil {
		return
	}
	q.cron = cron.New(cron.WithLocation(q.o.Location))
	q.cron.Schedule(q.sched, cron.FuncJob(q.purge))
	q.cron.Start()
	q.log.Info("nightly purge scheduled", "schedule", q.o.PurgeSchedule, "tz", q.o.Location.String(),
		"next", q.sched.Next(time.Now().In(q.o.Location)))
}

// EnqueueExport asks for the session's export to run soon. A session whose task is
// already pending, running or waiting for a retry is left as it is.
func (q *Queue) EnqueueExport(ctx context.Context, sessionID string) error {
	if sessionID == "" {
		return chat.Errorf(chat.EInvalid, "no session to export")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return chat.Errorf(chat.EUnavailable, "job queue is closed")
	}
	if _, ok := q.tasks[sessionID]; ok {
		return nil
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval: q.o.RetryBase, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: q.o.RetryMax,
	}
	b.Reset()
	q.tasks[sessionID] = &task{state: stateReady, backoff: b}
	q.ready = append(q.ready, sessionID)
	q.signal()
	return nil
}

// signal wakes one idle worker. Called with q.mu held.
func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Pending returns how many export tasks are queued, running or waiting for a retry.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.tasks)
}

// work runs ready tasks until the queue closes.
func (q *Queue) work() {
	defer q.workers.Done()
	for {
		id, ok := q.next()
		if !ok {
			return
		}
		q.finish(id, q.export(id))
	}
}

// next waits for a ready task and marks it running; false once the queue is closing.
func (q *Queue) next() (string, bool) {
	for {
		q.mu.Lock()
		if q.ctx.Err() != nil {
			q.mu.Unlock()
			return "", false
		}
		if len(q.ready) > 0 {
			id := q.ready[0]
			q.ready = q.ready[1:]
			q.tasks[id].state = stateRunning
			if len(q.ready) > 0 {
				q.signal() // let another idle worker take the next one
			}
			q.mu.Unlock()
			return id, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-q.ctx.Done():
		}
	}
}

// export runs the job, turning a panic into an error so one bad task cannot stop a
// worker.
func (q *Queue) export(id string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = chat.Errorf(chat.EInternal, "export of session %s panicked: %v", id, r)
		}
	}()
	return q.jobs.Export(q.ctx, id)
}

// finish settles a task after a run: done, failed for good, or retried after its
// next backoff delay.
func (q *Queue) finish(id string, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tasks[id]
	t.tries++
	switch {
	case err == nil:
		delete(q.tasks, id)
		q.log.Debug("export done", "session", id, "tries", t.tries)
	case chat.IsCode(err, chat.EPermanent):
		delete(q.tasks, id)
		q.log.Warn("export failed for good; not retrying", "session", id, "err", err)
	case q.ctx.Err() != nil:
		delete(q.tasks, id) // shutting down: the sweeper re-enqueues it at next start
	default:
		delay := t.backoff.NextBackOff()
		t.state = stateBackoff
		t.timer = time.AfterFunc(delay, func() { q.retry(id) })
		q.log.Warn("export failed; will retry", "session", id, "tries", t.tries, "retry_in", delay, "err", err)
	}
}

// retry puts a task whose backoff delay passed back in the ready list.
func (q *Queue) retry(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.tasks[id]
	if !ok || t.state != stateBackoff || q.closed {
		return
	}
	t.state, t.timer = stateReady, nil
	q.ready = append(q.ready, id)
	q.signal()
}

// purge runs one purge of everything due; a purge still running when the next is due
// makes the next one skip.
func (q *Queue) purge() {
	if !q.purging.CompareAndSwap(false, true) {
		q.log.Warn("previous purge still running; skipping this one")
		return
	}
	defer q.purging.Store(false)
	defer func() {
		if r := recover(); r != nil {
			q.log.Error("purge panicked", "panic", fmt.Sprint(r))
		}
	}()
	n, err := q.jobs.Purge(q.ctx, q.o.Now())
	if err != nil && q.ctx.Err() == nil {
		q.log.Error("purge failed", "purged", n, "err", err)
		return
	}
	q.log.Info("purge ran", "purged", n)
}

// Close stops the schedule and the workers: running exports see their context
// cancelled (their progress is recorded step by step, and the sweeper re-enqueues them
// at next start); Close waits for them to return. Calling Close twice is harmless.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	for _, t := range q.tasks {
		if t.timer != nil {
			t.timer.Stop()
		}
	}
	c := q.cron
	q.mu.Unlock()
	q.cancel()
	if c != nil {
		<-c.Stop().Done()
	}
	q.workers.Wait()
	return nil
}
