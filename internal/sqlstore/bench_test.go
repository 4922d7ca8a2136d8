package sqlstore

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"parley/internal/chat"
)

// BenchmarkAppendGroupCommit measures parallel Append throughput: many goroutines
// appending to many sessions, as a busy server does. msgs/s is the number to watch;
// goroutines=1 shows what a transaction per message would give.
func BenchmarkAppendGroupCommit(b *testing.B) {
	cases := []struct{ sessions, goroutines int }{
		{100, 1}, {100, 100}, {100, 1000}, {1, 100},
	}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("sqlite/sessions=%d/goroutines=%d", tc.sessions, tc.goroutines), func(b *testing.B) {
			benchmarkAppend(b, openTestSQLite(b), tc.sessions, tc.goroutines)
		})
	}
}

// BenchmarkAppendGroupCommitMySQL is the same on MySQL/MariaDB (PARLEY_TEST_MYSQL_DSN).
func BenchmarkAppendGroupCommitMySQL(b *testing.B) {
	db := openTestMySQL(b)
	for _, tc := range []struct{ sessions, goroutines int }{{100, 1}, {100, 100}, {100, 1000}} {
		b.Run(fmt.Sprintf("mysql/sessions=%d/goroutines=%d", tc.sessions, tc.goroutines), func(b *testing.B) {
			benchmarkAppend(b, db, tc.sessions, tc.goroutines)
		})
	}
}

func benchmarkAppend(b *testing.B, db *DB, sessions, goroutines int) {
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = chat.NewSessionID()
	}
	var next atomic.Int64
	b.SetParallelism(max(1, goroutines/max(1, runtimeProcs())))
	batches0, batched0 := db.w.batches.Load(), db.w.batched.Load()
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		m := chat.Message{SessionID: ids[int(g)%sessions], From: "host@example.com", To: "guest@example.com",
			Room: "bench", Kind: chat.KindChat, Text: "a typical short chat message, about sixty bytes long."}
		var buf []byte
		for i := 0; pb.Next(); i++ {
			buf = strconv.AppendInt(append(buf[:0], 'g'), g, 10)
			buf = strconv.AppendInt(append(buf, '-'), int64(i), 10)
			m.ClientID = string(buf)
			if _, _, err := db.Append(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.StopTimer()
	if n := db.w.batches.Load() - batches0; n > 0 {
		b.ReportMetric(float64(db.w.batched.Load()-batched0)/float64(n), "msgs/commit")
	}
}

// runtimeProcs is GOMAXPROCS, by which RunParallel multiplies SetParallelism.
func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// cpuTime is the CPU time (user + system) this process has used: on a shared machine
// CPU per message is steadier than messages per second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHotReads measures the reads a WebSocket connection makes (the session row,
// the last seq, a page of messages), from parallel goroutines as a busy server does.
func BenchmarkHotReads(b *testing.B) {
	db := openTestSQLite(b)
	ctx := context.Background()
	sess, _, err := db.Enter(ctx, "bench", "host@example.com", chat.Now())
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10 {
		m := chat.Message{SessionID: sess.ID, ClientID: "c" + strconv.Itoa(i), From: "host@example.com",
			Room: "bench", Kind: chat.KindChat, Text: "a typical short chat message, about sixty bytes long."}
		if _, _, err := db.Append(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	reads := map[string]func() error{
		"Session":  func() error { _, err := db.Session(ctx, sess.ID); return err },
		"LastSeq":  func() error { _, err := db.LastSeq(ctx, sess.ID); return err },
		"Messages": func() error { _, err := db.Messages(ctx, sess.ID, 0, 10); return err },
	}
	for _, name := range []string{"Session", "LastSeq", "Messages"} {
		read := reads[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := read(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
		})
	}
}
