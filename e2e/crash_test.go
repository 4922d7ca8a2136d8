package e2e

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/outbox"
	"parley/internal/testenv"
	"parley/internal/transcript"
)

// TestExportSurvivesCrashAtEveryStep kills the server (SIGKILL, no cleanup) right after
// each step of the end-of-chat export in turn, starts it again on the same data, and
// checks that the chat still completes with exactly one email per person.
func TestExportSurvivesCrashAtEveryStep(t *testing.T) {
	for _, step := range transcript.Steps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			srv := startServer(t, dir, "PARLEY_FAULT_AFTER_STEP="+step)
			ann := join(t, srv.URL, "crash", "ann@example.org")
			bob := join(t, srv.URL, "crash", "bob@example.org")
			a, w := ann.mustDial("")
			b, _ := bob.mustDial("")
			a.say("a-1", "first")
			b.say("b-1", "second")
			a.send(map[string]string{"type": "end"})
			_ = srv.WaitExit(30 * time.Second) // the fault kills it after the step

			srv = startServer(t, dir) // same data, no fault: the sweeper picks the job up
			ann = &person{t: t, base: srv.URL, email: ann.email, room: ann.room, cookie: ann.cookie}
			testenv.Eventually(t, 30*time.Second, func() bool {
				return ann.get("/transcripts/"+w.Session) == http.StatusOK
			}, "the transcript to be downloadable")
			mails, err := outbox.List(filepath.Join(dir, "outbox"), 100)
			if err != nil {
				t.Fatal(err)
			}
			perRecipient := map[string]int{}
			for _, m := range mails {
				perRecipient[m.To]++
			}
			if len(mails) != 2 || perRecipient[ann.email] != 1 || perRecipient[bob.email] != 1 {
				t.Fatalf("outbox after a crash after %q: %v, want one email each to %s and %s", step, perRecipient, ann.email, bob.email)
			}
		})
	}
}

// get fetches path with the person's cookie (no redirects followed) and returns the status.
func (p *person) get(path string) int {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.base+path, nil)
	req.Header.Set("Cookie", p.cookie)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
