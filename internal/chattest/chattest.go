// Package chattest holds the conformance suites every backend of a chat interface
// must pass, so SQLite, MySQL and DynamoDB keep exactly the same guarantees: a bug
// fixed in one backend gets a case here and is then checked in all of them.
//
// The suites tolerate a store shared between subtests (one database per test run):
// each subtest uses its own random rooms, emails and session ids, and filters
// store-wide lists down to the sessions it created.
package chattest

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"parley/internal/chat"
)

// unique returns prefix followed by random hex, so subtests sharing a store never meet.
func unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// email returns a unique, already normalised email address.
func email(name string) string { return unique(name+"-") + "@example.com" }

// baseTime is a fixed instant with a microsecond part, so lost precision shows.
var baseTime = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// at returns baseTime plus n seconds and n microseconds.
func at(n int) time.Time {
	return baseTime.Add(time.Duration(n)*time.Second + time.Duration(n)*time.Microsecond)
}

// parallel runs fn(i) for i in [0, n) on n goroutines released at once, and waits.
func parallel(n int, fn func(i int)) {
	var start, wg sync.WaitGroup
	start.Add(1)
	wg.Add(n)
	for i := range n {
		go func() {
			defer wg.Done()
			start.Wait()
			fn(i)
		}()
	}
	start.Done()
	wg.Wait()
}

// wantCode fails t unless err carries code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if !chat.IsCode(err, code) {
		t.Fatalf("error = %v (code %q), want code %q", err, chat.ErrorCode(err), code)
	}
}

// must fails t on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
