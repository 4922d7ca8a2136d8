package memqueue

import (
	"context"
	"sync"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// recordingJobs is a chat.Jobs whose Export fails as scripted; it stands in for the
// real Exporter (tested in package transcript) so retry timing can be checked exactly.
type recordingJobs struct {
	mu       sync.Mutex
	calls    map[string]int
	failures map[string][]error // errors returned by successive calls, then nil
	running  map[string]int
	overlap  bool
	block    chan struct{} // when set, Export waits for it (or ctx)
	purges   int
}

// errPanic scripted as a failure makes Export panic instead of returning.
var errPanic = chat.Errorf(chat.EInternal, "panic")

func newJobs() *recordingJobs {
	return &recordingJobs{calls: map[string]int{}, failures: map[string][]error{}, running: map[string]int{}}
}

func (j *recordingJobs) Export(ctx context.Context, id string) error {
	j.mu.Lock()
	j.calls[id]++
	j.running[id]++
	if j.running[id] > 1 {
		j.overlap = true
	}
	var err error
	if f := j.failures[id]; len(f) > 0 {
		err, j.failures[id] = f[0], f[1:]
	}
	block := j.block
	j.mu.Unlock()
	if err == errPanic {
		j.mu.Lock()
		j.running[id]--
		j.mu.Unlock()
		panic("scripted panic")
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	j.mu.Lock()
	j.running[id]--
	j.mu.Unlock()
	return err
}

func (j *recordingJobs) Purge(ctx context.Context, now time.Time) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.purges++
	return 0, nil
}

func (j *recordingJobs) count(id string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.calls[id]
}

func (j *recordingJobs) purgeCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.purges
}

func start(t *testing.T, jobs chat.Jobs, o Options) *Queue {
	t.Helper()
	if o.PurgeSchedule == "" && o.Schedule == nil {
		o.PurgeSchedule = "-"
	}
	q, err := New(jobs, o)
	if err != nil {
		t.Fatal(err)
	}
	q.Start(context.Background())
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func TestExportRetries(t *testing.T) {
	tests := []struct {
		name      string
		failures  []error
		wantCalls int
	}{
		{"OK", nil, 1},
		{"TemporaryThenOK", []error{chat.Errorf(chat.EUnavailable, "down"), chat.Errorf(chat.EUnavailable, "down")}, 3},
		{"PanicThenOK", []error{errPanic}, 2},
		{"Permanent", []error{chat.Errorf(chat.EPermanent, "refused")}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jobs := newJobs()
			jobs.failures["s1"] = tc.failures
			q := start(t, jobs, Options{RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
			if err := q.EnqueueExport(context.Background(), "s1"); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 5*time.Second, func() bool { return q.Pending() == 0 }, "task settled")
			if got := jobs.count("s1"); got != tc.wantCalls {
				t.Fatalf("Export called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestEnqueueWhilePendingIsNoop(t *testing.T) {
	jobs := newJobs()
	jobs.block = make(chan struct{})
	q := start(t, jobs, Options{Workers: 4})
	ctx := context.Background()
	for range 5 {
		if err := q.EnqueueExport(ctx, "s1"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return jobs.count("s1") == 1 }, "export running")
	_ = q.EnqueueExport(ctx, "s1") // running: still a no-op
	close(jobs.block)
	testenv.Eventually(t, 5*time.Second, func() bool { return q.Pending() == 0 }, "task settled")
	if got := jobs.count("s1"); got != 1 {
		t.Fatalf("Export called %d times, want 1", got)
	}
	if jobs.overlap {
		t.Fatal("the same session ran twice at once")
	}
	// Once done, a new enqueue runs it again (the job itself finds nothing to do).
	_ = q.EnqueueExport(ctx, "s1")
	testenv.Eventually(t, 5*time.Second, func() bool { return jobs.count("s1") == 2 && q.Pending() == 0 }, "second run")
}

func TestWorkersRunInParallel(t *testing.T) {
	jobs := newJobs()
	jobs.block = make(chan struct{})
	q := start(t, jobs, Options{Workers: 3})
	for _, id := range []string{"a", "b", "c"} {
		_ = q.EnqueueExport(context.Background(), id)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		return jobs.count("a") == 1 && jobs.count("b") == 1 && jobs.count("c") == 1
	}, "three exports running at once")
	close(jobs.block)
	testenv.Eventually(t, 5*time.Second, func() bool { return q.Pending() == 0 }, "tasks settled")
}

func TestEnqueueBeforeStart(t *testing.T) {
	jobs := newJobs()
	q, err := New(jobs, Options{PurgeSchedule: "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_ = q.EnqueueExport(context.Background(), "early")
	q.Start(context.Background())
	testenv.Eventually(t, 5*time.Second, func() bool { return jobs.count("early") == 1 }, "early task run")
}

func TestCloseStopsRunningAndRefuses(t *testing.T) {
	jobs := newJobs()
	jobs.block = make(chan struct{}) // never closed: Close must cancel the export
	q := start(t, jobs, Options{})
	_ = q.EnqueueExport(context.Background(), "s1")
	testenv.Eventually(t, 5*time.Second, func() bool { return jobs.count("s1") == 1 }, "export running")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.EnqueueExport(context.Background(), "s2"); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("enqueue after Close: %v, want unavailable", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// every is a sub-second schedule for tests (cron's "@every" rounds up to a second).
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

func TestPurgeScheduleFires(t *testing.T) {
	jobs := newJobs()
	start(t, jobs, Options{Schedule: every(20 * time.Millisecond)})
	testenv.Eventually(t, 5*time.Second, func() bool { return jobs.purgeCount() >= 2 }, "purge to run twice")
}

func TestPurgeScheduleSpec(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin") // from time/tzdata when the system has none
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    string
		loc     *time.Location
		from    time.Time
		want    time.Time
		wantErr bool
	}{
		{"DefaultUTC", "", nil, time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC), false},
		{"AfterTodaysRun", "", nil, time.Date(2026, 11, 27, 23, 59, 30, 0, time.UTC), time.Date(2026, 11, 28, 23, 59, 0, 0, time.UTC), false},
		{"Berlin", "59 23 * * *", berlin, time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 22, 59, 0, 0, time.UTC), false},
		{"Descriptor", "@hourly", nil, time.Date(2026, 11, 27, 13, 10, 0, 0, time.UTC), time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC), false},
		{"Invalid", "61 25 * * *", nil, time.Time{}, time.Time{}, true},
		{"SixFields", "0 59 23 * * *", nil, time.Time{}, time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := withDefaults(Options{PurgeSchedule: tc.spec, Location: tc.loc})
			s, err := parseSchedule(o)
			if tc.wantErr {
				if !chat.IsCode(err, chat.EInvalid) {
					t.Fatalf("parse %q: %v, want invalid", tc.spec, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// cron evaluates the schedule in the queue's Location; do the same.
			if got := s.Next(tc.from.In(o.Location)); !got.Equal(tc.want) {
				t.Fatalf("next run after %v = %v, want %v", tc.from, got.UTC(), tc.want)
			}
		})
	}
	var _ cron.Schedule = every(0)
}
