package asynqqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"parley/internal/chat"
	"parley/internal/redisconn"
)

// TaskPurgeTick is what the Scheduler enqueues on the purge schedule. asynq's
// Scheduler can only enqueue a fixed task with fixed options, but the purge needs a
// task id naming the day it runs for ("purge:" + day in the configured zone), so that
// two schedulers running at once purge once. The tick's handler computes that id when
// it runs and enqueues the real purge task with it; the second tick of the same day
// gets asynq.ErrTaskIDConflict and does nothing.
const TaskPurgeTick = "messages:purge-tick"

// Defaults for the zero values of WorkerOptions.
const (
	DefaultPurgeSchedule = "59 23 * * *"
	DefaultConcurrency   = 4
)

// purgeRetention keeps a finished purge task (and so its id) for longer than a day,
// so a later tick of the same day still conflicts instead of purging again.
const purgeRetention = 48 * time.Hour

// WorkerOptions configure `parley worker`. Zero values take the defaults.
type WorkerOptions struct {
	Queue         string // asynq queue; DefaultQueue when empty
	MaxRetry      int    // retries of purge tasks (an export's come from its enqueuer's Options); DefaultMaxRetry when zero
	Concurrency   int    // tasks run at once; DefaultConcurrency when zero
	PurgeSchedule string // cron spec (5 fields or asynq's "@every 1h"); DefaultPurgeSchedule
	Location      *time.Location
	// RetryDelay is the pause before retry n (0-based) after err; exponential from
	// 10 s, capped at 30 min, with jitter, when nil.
	RetryDelay func(n int, err error) time.Duration
	// DelayedTaskCheckInterval is how often retries and scheduled tasks are moved to
	// pending (asynq's default is 5 s).
	DelayedTaskCheckInterval time.Duration
	// TaskCheckInterval is how often an idle server looks for new tasks (asynq's
	// default is 1 s).
	TaskCheckInterval time.Duration
	// ShutdownTimeout is how long Run waits for running tasks when stopping
	// (asynq's default is 8 s); unfinished tasks go back to the queue.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Worker runs export and purge tasks and the purge schedule.
type Worker struct {
	rdb       *redisconn.Client
	client    *asynq.Client
	server    *asynq.Server
	scheduler *asynq.Scheduler
	jobs      chat.Jobs
	opts      WorkerOptions
	log       *slog.Logger
	now       func() time.Time
	tickHook  func(day string) // tests: called after each tick

	mu      sync.Mutex
	stop    context.CancelFunc
	stopped chan struct{}
	closed  bool
}

// NewWorker connects to Redis and prepares the server and the scheduler; Run starts
// them. An invalid schedule is an EInvalid error here, not at Run.
func NewWorker(target redisconn.Target, jobs chat.Jobs, opts WorkerOptions) (*Worker, error) {
	opts = opts.withDefaults()
	rdb, err := newRedis(target, "parley-worker")
	if err != nil {
		return nil, err
	}
	w := &Worker{rdb: rdb, client: asynq.NewClientFromRedisClient(rdb.Cmd), jobs: jobs, opts: opts,
		log: opts.Logger.With("component", "asynqqueue"), now: time.Now}
	w.server = asynq.NewServerFromRedisClient(rdb.Cmd, w.serverConfig())
	w.scheduler = asynq.NewSchedulerFromRedisClient(rdb.Cmd, &asynq.SchedulerOpts{
		Location:        opts.Location,
		Logger:          asynqLogger{w.log.With("part", "scheduler")},
		PostEnqueueFunc: w.tickEnqueued,
	})
	_, err = w.scheduler.Register(opts.PurgeSchedule, asynq.NewTask(TaskPurgeTick, nil),
		asynq.Queue(opts.Queue), asynq.MaxRetry(3))
	if err != nil {
		_ = rdb.Close()
		return nil, chat.Wrap(chat.EInvalid, err, "purge schedule %q is not valid", opts.PurgeSchedule)
	}
	return w, nil
}

func (o WorkerOptions) withDefaults() WorkerOptions {
	q := Options{Queue: o.Queue, MaxRetry: o.MaxRetry}.withDefaults()
	o.Queue, o.MaxRetry = q.Queue, q.MaxRetry
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PurgeSchedule == "" {
		o.PurgeSchedule = DefaultPurgeSchedule
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.RetryDelay == nil {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (w *Worker) serverConfig() asynq.Config {
	return asynq.Config{
		Concurrency:              w.opts.Concurrency,
		Queues:                   map[string]int{w.opts.Queue: 1},
		RetryDelayFunc:           func(n int, err error, _ *asynq.Task) time.Duration { return w.opts.RetryDelay(n, err) },
		DelayedTaskCheckInterval: w.opts.DelayedTaskCheckInterval,
		TaskCheckInterval:        w.opts.TaskCheckInterval,
		ShutdownTimeout:          w.opts.ShutdownTimeout,
		ErrorHandler:             asynq.ErrorHandlerFunc(w.taskFailed),
		HealthCheckFunc:          w.healthCheck,
		Logger:                   asynqLogger{w.log.With("part", "server")},
	}
}

// DefaultRetryDelay backs off exponentially from 10 s, capped at 30 min, with up to
// 25% jitter so that tasks failing together do not retry together.
func DefaultRetryDelay(n int, _ error) time.Duration {
	d := min(10*time.Second<<min(n, 12), 30*time.Minute)
	return d + rand.N(d/4+1)
}

// Run starts the task server and the scheduler and blocks until ctx ends or Close is
// called; it then stops the scheduler and lets running tasks finish (up to
// ShutdownTimeout). Tasks not finished go back to the queue.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.closed || w.stop != nil {
		w.mu.Unlock()
		return chat.Errorf(chat.EInternal, "worker already running or closed")
	}
	ctx, w.stop = context.WithCancel(ctx)
	w.stopped = make(chan struct{})
	w.mu.Unlock()
	defer close(w.stopped)

	mux := asynq.NewServeMux()
	mux.HandleFunc(chat.TaskExport, w.HandleExport)
	mux.HandleFunc(chat.TaskPurge, w.HandlePurge)
	mux.HandleFunc(TaskPurgeTick, w.HandlePurgeTick)
	if err := w.server.Start(mux); err != nil {
		return chat.Wrap(chat.EUnavailable, err, "starting the task server failed")
	}
	if err := w.scheduler.Start(); err != nil {
		w.server.Shutdown()
		return chat.Wrap(chat.EUnavailable, err, "starting the scheduler failed")
	}
	w.log.Info("worker started", "queue", w.opts.Queue, "purge_schedule", w.opts.PurgeSchedule,
		"tz", w.opts.Location.String())
	<-ctx.Done()
	w.scheduler.Shutdown()
	w.server.Shutdown()
	w.log.Info("worker stopped")
	return nil
}

// Close stops Run (waiting for it) and closes the Redis connection.
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	stop, stopped := w.stop, w.stopped
	w.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
	return w.rdb.Close()
}

// Ping reports whether Redis answers.
func (w *Worker) Ping(ctx context.Context) error {
	return w.rdb.Ping(ctx)
}

// HandleExport runs the export job of the session named by the payload. A permanent
// failure is wrapped with asynq.SkipRetry, so the task is archived at once, visible
// to operators, instead of being retried.
func (w *Worker) HandleExport(ctx context.Context, t *asynq.Task) error {
	sessionID := string(t.Payload())
	if sessionID == "" {
		return fmt.Errorf("export task without a session id: %w", asynq.SkipRetry)
	}
	return taskError(w.jobs.Export(ctx, sessionID))
}

// HandlePurgeTick enqueues the purge of the current day (in the configured zone)
// under the task id "purge:" + day; see TaskPurgeTick.
func (w *Worker) HandlePurgeTick(ctx context.Context, _ *asynq.Task) error {
	day := PurgeDay(w.now(), w.opts.Location)
	_, err := w.client.EnqueueContext(ctx, asynq.NewTask(chat.TaskPurge, []byte(day)),
		asynq.TaskID(PurgeTaskID(day)), asynq.Queue(w.opts.Queue),
		asynq.MaxRetry(w.opts.MaxRetry), asynq.Retention(purgeRetention))
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		w.log.Debug("purge already enqueued for the day", "day", day)
	case err != nil:
		return chat.Wrap(chat.EUnavailable, err, "enqueueing the purge failed")
	default:
		w.log.Info("purge enqueued", "day", day)
	}
	if w.tickHook != nil {
		w.tickHook(day)
	}
	return nil
}

// HandlePurge runs the purge job. The payload (the day) is informational: the job
// purges everything eligible now, which also catches up a missed night.
func (w *Worker) HandlePurge(ctx context.Context, t *asynq.Task) error {
	n, err := w.jobs.Purge(ctx, w.now())
	if err != nil {
		return taskError(err)
	}
	w.log.Info("purge finished", "day", string(t.Payload()), "purged", n)
	return nil
}

// PurgeDay is the calendar day of t in loc, the period a purge task is keyed by.
func PurgeDay(t time.Time, loc *time.Location) string { return t.In(loc).Format(time.DateOnly) }

// PurgeTaskID is the asynq task id of a day's purge.
func PurgeTaskID(day string) string { return "purge:" + day }

// taskError marks permanent job failures so asynq archives them without retrying.
func taskError(err error) error {
	if err != nil && chat.ErrorCode(err) == chat.EPermanent {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return err
}

// taskFailed logs every failed attempt; the task itself says whether it is retried.
func (w *Worker) taskFailed(ctx context.Context, t *asynq.Task, err error) {
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	w.log.Warn("task failed", "type", t.Type(), "task_id", id, "retried", retried,
		"max_retry", maxRetry, "code", chat.ErrorCode(err), "err", err)
}

// tickEnqueued logs a scheduler tick that could not be enqueued.
func (w *Worker) tickEnqueued(_ *asynq.TaskInfo, err error) {
	if err != nil {
		w.log.Error("scheduler could not enqueue the purge tick", "err", err)
	}
}

func (w *Worker) healthCheck(err error) {
	if err != nil {
		w.log.Warn("task server cannot reach redis", "err", err)
	}
}

// asynqLogger sends asynq's own log lines to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }

// Fatal logs at error level; asynq never calls it, and a library must not exit.
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }
