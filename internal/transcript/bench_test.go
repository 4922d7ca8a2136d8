package transcript_test

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/transcript"
)

// BenchmarkExport100k measures the heart of an export for a long chat: 100,000
// messages read page by page from SQLite, written as CSV with its SHA-256, and stored
// in the local archive (written, fsynced, read back and hashed). Target: under 2 s.
func BenchmarkExport100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	e := newEnv(b)
	s := e.chatSession(b, "bench", host, participant, n, true)
	b.ReportAllocs()
	var size int64
	cpu := cpuTime()
	ops := 0
	for b.Loop() {
		ops++
		var buf bytes.Buffer
		buf.Grow(n * 160) // as the Exporter does from the session's last seq
		sum, err := transcript.Write(ctx, e.db, s, &buf)
		if err != nil {
			b.Fatal(err)
		}
		obj, err := e.archive.Put(ctx, chat.ArchiveKey(s.ID), buf.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		if sum.Messages != n || obj.SHA256 != sum.SHA256 {
			b.Fatalf("wrote %d messages, archive %s vs %s", sum.Messages, obj.SHA256, sum.SHA256)
		}
		size = obj.Size
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/transcript")
	// CPU time is reported beside wall time: on a shared machine wall time also
	// counts waiting for the CPU.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(ops)/1e6, "cpu-ms/op")
}

// cpuTime returns the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExportJob100k runs the whole export job (CSV, CSV_FILES copy, archive,
// record, two emails, complete) on a fresh ending session of 100,000 messages per
// iteration; the setup of each session is not timed.
func BenchmarkExportJob100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	e := newEnv(b)
	x := e.exporter(b, e.options(nil))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		s := e.chatSession(b, "job"+string(rune('a'+i%26)), host, participant, n, true)
		b.StartTimer()
		if err := x.Export(ctx, s.ID); err != nil {
			b.Fatal(err)
		}
	}
}
