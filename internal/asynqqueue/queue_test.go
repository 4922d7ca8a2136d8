package asynqqueue

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"parley/internal/chat"
	"parley/internal/redisconn"
	"parley/internal/testenv"
)

// recordingJobs is a chat.Jobs that counts calls and fails as a test tells it to.
type recordingJobs struct {
	mu        sync.Mutex
	exports   map[string]int
	purges    int
	exportErr func(sessionID string, attempt int) error // nil: succeed
}

func newRecordingJobs() *recordingJobs { return &recordingJobs{exports: make(map[string]int)} }

func (j *recordingJobs) Export(ctx context.Context, sessionID string) error {
	j.mu.Lock()
	j.exports[sessionID]++
	n, fail := j.exports[sessionID], j.exportErr
	j.mu.Unlock()
	if fail != nil {
		return fail(sessionID, n)
	}
	return nil
}

func (j *recordingJobs) Purge(ctx context.Context, now time.Time) (int, error) {
	j.mu.Lock()
	j.purges++
	j.mu.Unlock()
	return 0, nil
}

func (j *recordingJobs) exportCount(id string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.exports[id]
}

func (j *recordingJobs) purgeCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.purges
}

// testEnv is one test's asynq queue (a unique name, deleted at cleanup).
type testEnv struct {
	url       string
	queue     string
	inspector *asynq.Inspector
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	u := testenv.RedisURL(t)
	env := &testEnv{url: u, queue: testenv.UniqueName(t, "parleytest")}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	env.inspector = asynq.NewInspectorFromRedisClient(rdb)
	t.Cleanup(func() {
		_ = env.inspector.DeleteQueue(env.queue, true)
		ctx := context.Background() // DeleteQueue leaves the statistics counters
		iter := rdb.Scan(ctx, 0, "asynq:{"+env.queue+"}:*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return env
}

func (env *testEnv) client(t *testing.T, maxRetry int) *Queue {
	t.Helper()
	q, err := NewClient(redisconn.Target{URL: env.url}, Options{Queue: env.queue, MaxRetry: maxRetry})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// worker builds a worker with fast test timings; start runs it until cleanup.
func (env *testEnv) worker(t *testing.T, jobs chat.Jobs, schedule string, maxRetry int) *Worker {
	t.Helper()
	w, err := NewWorker(redisconn.Target{URL: env.url}, jobs, WorkerOptions{
		Queue: env.queue, MaxRetry: maxRetry, Concurrency: 1, PurgeSchedule: schedule,
		RetryDelay:               func(int, error) time.Duration { return 10 * time.Millisecond },
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		TaskCheckInterval:        50 * time.Millisecond,
		ShutdownTimeout:          time.Second,
		Logger:                   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	return w
}

func start(t *testing.T, w *Worker) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// idle reports whether the queue has nothing pending, running, scheduled or retrying.
func (env *testEnv) idle() bool {
	info, err := env.inspector.GetQueueInfo(env.queue)
	return err == nil && info.Pending+info.Active+info.Scheduled+info.Retry == 0
}

func (env *testEnv) state(t *testing.T, taskID string) asynq.TaskState {
	t.Helper()
	info, err := env.inspector.GetTaskInfo(env.queue, taskID)
	if err != nil {
		return 0
	}
	return info.State
}

// TestExportOnce: enqueueing a pending session again is harmless and the job runs
// once; after it completed, the id is free and a new enqueue runs it again.
func TestExportOnce(t *testing.T) {
	env := newTestEnv(t)
	q, jobs := env.client(t, 0), newRecordingJobs()
	ctx := context.Background()
	for _, id := range []string{"s1", "s1", "s2", "s1"} {
		if err := q.EnqueueExport(ctx, id); err != nil {
			t.Fatalf("EnqueueExport(%s): %v", id, err)
		}
	}
	start(t, env.worker(t, jobs, "", 0))
	testenv.Eventually(t, 15*time.Second, func() bool {
		return jobs.exportCount("s1") >= 1 && jobs.exportCount("s2") >= 1 && env.idle()
	}, "both exports and an idle queue")
	if n := jobs.exportCount("s1"); n != 1 {
		t.Fatalf("s1 exported %d times, want 1", n)
	}
	if err := q.EnqueueExport(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return jobs.exportCount("s1") == 2 && env.idle() }, "the re-enqueued export")
	if err := q.EnqueueExport(ctx, ""); !chat.IsCode(err, chat.EInvalid) {
		t.Fatalf("EnqueueExport(\"\") = %v, want EInvalid", err)
	}
}

// TestExportRetries covers what each kind of failure does to the task.
func TestExportRetries(t *testing.T) {
	unavailable := chat.Errorf(chat.EUnavailable, "archive down")
	tests := []struct {
		name      string
		fail      func(attempt int) error
		wantCalls int
		wantState asynq.TaskState // 0: gone (completed, not retained)
	}{
		{"TemporaryFailureRetriedUntilSuccess", func(n int) error {
			if n < 3 {
				return unavailable
			}
			return nil
		}, 3, 0},
		{"PermanentFailureArchivedAtOnce", func(int) error {
			return chat.Errorf(chat.EPermanent, "mail address refused")
		}, 1, asynq.TaskStateArchived},
		{"WrappedPermanentFailure", func(int) error {
			return errors.Join(errors.New("step"), chat.Errorf(chat.EPermanent, "no"))
		}, 1, asynq.TaskStateArchived},
		{"RetriesExhaustedArchived", func(int) error { return unavailable }, 3, asynq.TaskStateArchived},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			q, jobs := env.client(t, 2), newRecordingJobs()
			jobs.exportErr = func(_ string, n int) error { return tt.fail(n) }
			start(t, env.worker(t, jobs, "", 0))
			if err := q.EnqueueExport(context.Background(), "s1"); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 15*time.Second, func() bool {
				return jobs.exportCount("s1") >= tt.wantCalls && env.idle() && env.state(t, "export:s1") == tt.wantState
			}, "the task to settle")
			if n := jobs.exportCount("s1"); n != tt.wantCalls {
				t.Fatalf("export ran %d times, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestArchivedExportOnReenqueue: a failure archives the task (at once when
// permanent, after its retries otherwise) where the Inspector shows it; enqueueing the
// session again, as the sweeper does while the session is still ending, runs it again.
func TestArchivedExportOnReenqueue(t *testing.T) {
	env := newTestEnv(t)
	q, jobs := env.client(t, 1), newRecordingJobs()
	var healed atomic.Bool
	jobs.exportErr = func(id string, _ int) error {
		switch {
		case healed.Load():
			return nil
		case id == "permanent":
			return chat.Errorf(chat.EPermanent, "session still in progress")
		default:
			return chat.Errorf(chat.EUnavailable, "archive down")
		}
	}
	start(t, env.worker(t, jobs, "", 0))
	ctx := context.Background()
	for _, id := range []string{"permanent", "flaky"} {
		if err := q.EnqueueExport(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		return env.state(t, "export:permanent") == asynq.TaskStateArchived &&
			env.state(t, "export:flaky") == asynq.TaskStateArchived
	}, "both archived")
	archived, err := env.inspector.ListArchivedTasks(env.queue)
	if err != nil || len(archived) != 2 {
		t.Fatalf("archived tasks = %+v, %v; want 2", archived, err)
	}
	for _, info := range archived {
		permanent := strings.Contains(info.LastErr, asynq.SkipRetry.Error())
		if permanent != (info.ID == "export:permanent") {
			t.Errorf("task %s archived with %q", info.ID, info.LastErr)
		}
	}
	if n, m := jobs.exportCount("permanent"), jobs.exportCount("flaky"); n != 1 || m != 2 {
		t.Fatalf("ran permanent %d and flaky %d times, want 1 and 2 (MaxRetry 1)", n, m)
	}
	healed.Store(true)
	for _, id := range []string{"permanent", "flaky"} {
		if err := q.EnqueueExport(ctx, id); err != nil {
			t.Fatalf("EnqueueExport(%s) again: %v", id, err)
		}
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		return env.state(t, "export:flaky") == 0 && env.state(t, "export:permanent") == 0 && env.idle()
	}, "the revived exports to finish")
	if n, m := jobs.exportCount("permanent"), jobs.exportCount("flaky"); n != 2 || m != 3 {
		t.Fatalf("ran permanent %d and flaky %d times, want 2 and 3", n, m)
	}
}

// TestPurgeSchedule: two workers, each with its scheduler firing every second, purge
// once for the day; the completed purge task is kept under its day's id.
func TestPurgeSchedule(t *testing.T) {
	env := newTestEnv(t)
	jobs := newRecordingJobs()
	var ticks atomic.Int32
	for range 2 {
		w := env.worker(t, jobs, "@every 1s", 0)
		w.tickHook = func(string) { ticks.Add(1) }
		start(t, w)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return ticks.Load() >= 4 && env.idle() }, "four ticks")
	if n := jobs.purgeCount(); n != 1 {
		t.Fatalf("purge ran %d times after %d ticks, want 1", n, ticks.Load())
	}
	id := PurgeTaskID(PurgeDay(time.Now(), time.UTC))
	if st := env.state(t, id); st != asynq.TaskStateCompleted {
		t.Fatalf("task %s state = %v, want completed (retained)", id, st)
	}
}

// TestPurgePerDay: the purge key is the day in the configured zone; each day purges
// once however many ticks it gets.
func TestPurgePerDay(t *testing.T) {
	env := newTestEnv(t)
	jobs := newRecordingJobs()
	w := env.worker(t, jobs, "", 0)
	w.opts.Location = time.FixedZone("UTC+13", 13*3600)
	var clock atomic.Pointer[time.Time]
	w.now = func() time.Time { return *clock.Load() }
	set := func(s string) {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		clock.Store(&tm)
	}
	set("2026-11-27T10:00:00Z") // already the 27th, 23:00, in UTC+13
	start(t, w)
	ctx := context.Background()
	steps := []struct {
		now     string
		wantDay string
		purges  int
	}{
		{"2026-11-27T10:00:00Z", "2026-11-27", 1},
		{"2026-11-27T10:59:00Z", "2026-11-27", 1},
		{"2026-11-27T11:00:00Z", "2026-11-28", 2}, // midnight in UTC+13
		{"2026-11-27T12:00:00Z", "2026-11-28", 2},
	}
	for _, st := range steps {
		set(st.now)
		if err := w.HandlePurgeTick(ctx, nil); err != nil {
			t.Fatalf("tick at %s: %v", st.now, err)
		}
		testenv.Eventually(t, 15*time.Second, env.idle, "an idle queue")
		if n := jobs.purgeCount(); n != st.purges {
			t.Fatalf("after tick at %s: %d purges, want %d", st.now, n, st.purges)
		}
		if s := env.state(t, PurgeTaskID(st.wantDay)); s != asynq.TaskStateCompleted {
			t.Fatalf("after tick at %s: %s state %v, want completed", st.now, PurgeTaskID(st.wantDay), s)
		}
	}
}

func TestNewWorkerRejectsBadSchedule(t *testing.T) {
	env := newTestEnv(t)
	_, err := NewWorker(redisconn.Target{URL: env.url}, newRecordingJobs(), WorkerOptions{Queue: env.queue, PurgeSchedule: "every night"})
	if !chat.IsCode(err, chat.EInvalid) {
		t.Fatalf("NewWorker with a bad schedule = %v, want EInvalid", err)
	}
}

func TestDefaultRetryDelay(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		min, max time.Duration
	}{
		{"First", 0, 10 * time.Second, 12500 * time.Millisecond},
		{"Third", 2, 40 * time.Second, 50 * time.Second},
		{"Capped", 40, 30 * time.Minute, 37*time.Minute + 30*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				if d := DefaultRetryDelay(tt.n, nil); d < tt.min || d > tt.max {
					t.Fatalf("DefaultRetryDelay(%d) = %v, want in [%v, %v]", tt.n, d, tt.min, tt.max)
				}
			}
		})
	}
}
