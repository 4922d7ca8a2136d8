package chat

import (
	"context"
	"time"
)

// Task type names, shared by every Queue so that a job enqueued by one process can be
// run by another.
const (
	TaskExport = "session:export" // payload: session id; task id: "export:" + session id
	TaskPurge  = "messages:purge" // the nightly purge; task id: "purge:" + day
)

// Queue runs background jobs. It is not the durable record of work: a session in
// StatusEnding is, and the sweeper enqueues such sessions again at start and every few
// minutes, so a queue that loses a task delays the work but never drops it.
type Queue interface {
	// EnqueueExport asks for the session's export job to run soon. Tasks are keyed by
	// session id, so enqueueing a session that is already pending is harmless.
	EnqueueExport(ctx context.Context, sessionID string) error

	Close() error
}

// Jobs are the handlers the queue runs. Each is safe to run any number of times and
// concurrently with itself: every step checks what is already recorded.
type Jobs interface {
	// Export writes, archives and emails the transcript of an ending session and marks
	// it completed. An error marked EPermanent must not be retried.
	Export(ctx context.Context, sessionID string) error

	// Purge deletes the messages of completed sessions whose archive is confirmed.
	Purge(ctx context.Context, now time.Time) (purged int, err error)
}
