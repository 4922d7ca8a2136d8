// Package asynqqueue runs Parley's background jobs on asynq over Redis: the
// end-of-chat export (enqueued by `parley serve`) and the nightly purge, both run by
// `parley worker`, which also hosts the asynq Scheduler that plays Celery beat.
//
// asynq is not the durable record of work: a session in StatusEnding is, and the
// sweeper enqueues such sessions again. Task ids make those repeats harmless.
package asynqqueue

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"parley/internal/chat"
	"parley/internal/redisconn"
)

// DefaultQueue is the asynq queue Parley's tasks go to when none is configured.
const DefaultQueue = "parley"

// DefaultMaxRetry is how often a failing export is retried before it is archived:
// with the default backoff (capped at 30 minutes) about half a day of attempts.
const DefaultMaxRetry = 30

// Options configure the enqueueing side.
type Options struct {
	Queue    string // asynq queue name; DefaultQueue when empty
	MaxRetry int    // export retries before archiving; DefaultMaxRetry when zero
}

func (o Options) withDefaults() Options {
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = DefaultMaxRetry
	}
	return o
}

// Queue is the chat.Queue of a process that enqueues exports (`parley serve`, the
// sweeper, the CLI).
type Queue struct {
	rdb       *redisconn.Client
	client    *asynq.Client
	inspector *asynq.Inspector
	opts      Options
}

var _ chat.Queue = (*Queue)(nil)

// NewClient connects to the Redis server or cluster of target and checks that it
// answers. On a cluster, asynq runs on go-redis's cluster client (what
// asynq.RedisClusterClientOpt builds); asynq's keys carry the queue name as their
// hash tag, so one queue lives on one shard.
func NewClient(target redisconn.Target, opts Options) (*Queue, error) {
	rdb, err := newRedis(target, "parley-queue")
	if err != nil {
		return nil, err
	}
	return &Queue{
		rdb:       rdb,
		client:    asynq.NewClientFromRedisClient(rdb.Cmd),
		inspector: asynq.NewInspectorFromRedisClient(rdb.Cmd),
		opts:      opts.withDefaults(),
	}, nil
}

// newRedis opens and pings a go-redis client named name (visible in CLIENT LIST).
func newRedis(target redisconn.Target, name string) (*redisconn.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return redisconn.Open(ctx, target, name)
}

// NewExportTask is the export task of a session: its payload is the session id.
func NewExportTask(sessionID string) *asynq.Task {
	return asynq.NewTask(chat.TaskExport, []byte(sessionID))
}

// ExportTaskID is the asynq task id of a session's export, so that one session has at
// most one export task pending, retrying or archived at a time.
func ExportTaskID(sessionID string) string { return "export:" + sessionID }

// EnqueueExport asks for the session's export to run soon. If the session already has
// a pending, scheduled, retrying or running task, nothing is added. If its task was
// archived (retries ran out, or the job called the failure permanent), it is put back
// to pending: callers enqueue only sessions whose record says the export is still to
// do (End chat, the sweeper), and that record outranks an old verdict. Between two
// sweeps the failed task stays archived, visible to operators. Completed tasks are
// not retained, so their id is free at once.
func (q *Queue) EnqueueExport(ctx context.Context, sessionID string) error {
	if sessionID == "" {
		return chat.Errorf(chat.EInvalid, "empty session id")
	}
	err := q.enqueue(ctx, sessionID)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return q.reviveArchived(ctx, sessionID)
	}
	return err
}

func (q *Queue) enqueue(ctx context.Context, sessionID string) error {
	_, err := q.client.EnqueueContext(ctx, NewExportTask(sessionID),
		asynq.TaskID(ExportTaskID(sessionID)), asynq.MaxRetry(q.opts.MaxRetry), asynq.Queue(q.opts.Queue))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return chat.Wrap(chat.EUnavailable, err, "enqueueing the export failed")
	}
	return err
}

// reviveArchived handles an id conflict: see EnqueueExport.
func (q *Queue) reviveArchived(ctx context.Context, sessionID string) error {
	id := ExportTaskID(sessionID)
	info, err := q.inspector.GetTaskInfo(q.opts.Queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound):
		// It finished between the two calls: enqueue once more; a conflict now
		// means another process just did.
		if err := q.enqueue(ctx, sessionID); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return err
		}
		return nil
	case err != nil:
		return chat.Wrap(chat.EUnavailable, err, "looking up the export task failed")
	case info.State != asynq.TaskStateArchived:
		return nil // pending, scheduled, retrying or running
	}
	if err := q.inspector.RunTask(q.opts.Queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return chat.Wrap(chat.EUnavailable, err, "reviving the archived export failed")
	}
	return nil
}

// Ping reports whether the queue's Redis answers (for /readyz).
func (q *Queue) Ping(ctx context.Context) error {
	return q.rdb.Ping(ctx)
}

// Close releases the Redis connection (the asynq client and inspector share it).
func (q *Queue) Close() error { return q.rdb.Close() }
