package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"parley/internal/testenv"
)

// TestFaultExportResets: a chat ends while S3 (MinIO) and then SMTP (Mailpit), each
// behind a proxy, drop every connection. Both people are told the chat ended at once;
// the export fails and is retried, and once the connections work again it completes:
// both get the transcript frame, each gets exactly one email, and the transcript link
// serves the CSV.
func TestFaultExportResets(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	s3u, err := url.Parse(p.s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	s3proxy := newToxicProxy(t, "s3", s3u.Host)
	smtpProxy := newToxicProxy(t, "smtp", testenv.SMTPAddr(t))
	var env []string
	for _, kv := range p.env {
		if !strings.HasPrefix(kv, "PARLEY_DYNAMODB_") {
			env = append(env, kv)
		}
	}
	p.env = append(env,
		"PARLEY_MYSQL_MESSAGES=true",
		"PARLEY_S3_ENDPOINT=http://"+s3proxy.Addr(),
		// A dropped SMTP connection is noticed after this long, not after the 30 s default.
		"PARLEY_SMTP_URL=smtp://"+smtpProxy.Addr()+"?tls=none&timeout=3s",
	)
	dir := t.TempDir()
	p.run(t, dir, "migrate", "--create-bucket")
	srv := startServer(t, dir, p.env...)
	pr := enterPair(t, srv, srv, "resets")
	pr.a.say("a-1", "hello through a flaky network")
	pr.b.say("b-1", "the transcript must still arrive")

	// S3 resets every connection as soon as Parley sends on it.
	s3proxy.Add(`{"name":"reset","type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`)
	// SMTP says nothing and drops the connection after half a second.
	smtpProxy.Add(`{"name":"drop","type":"timeout","attributes":{"timeout":500}}`)
	failures := func() int { return strings.Count(srv.logs.String(), `msg="export failed; will retry"`) }

	ended := time.Now()
	pr.a.send(map[string]string{"type": "end"})
	for who, c := range map[string]*conn{"ann": pr.a, "bob": pr.b} {
		if f := c.next("ended"); f.By != pr.ann.email {
			t.Fatalf("%s: ended by %q, want %s", who, f.By, pr.ann.email)
		}
	}
	t.Logf("both told the chat ended %s after ann ended it", time.Since(ended).Round(time.Millisecond))
	testenv.Eventually(t, 30*time.Second, func() bool { return failures() >= 1 }, "the export to fail on S3")
	if line := lastLine(srv.logs.String(), `msg="export failed; will retry"`); !strings.Contains(line, "S3") {
		t.Fatalf("the export failed, but not on S3: %s", line)
	}
	if code := pr.ann.get("/transcripts/" + pr.session); code != http.StatusNotFound {
		t.Fatalf("GET /transcripts while the export fails: %d, want 404 (not ready yet)", code)
	}

	// S3 is back; SMTP is still dropping: the export now fails on the email.
	s3proxy.Remove("reset")
	s3Back := failures()
	testenv.Eventually(t, 30*time.Second, func() bool { return failures() > s3Back }, "the export to fail on SMTP")
	if line := lastLine(srv.logs.String(), `msg="export failed; will retry"`); !strings.Contains(line, "smtp") {
		t.Fatalf("with S3 back the export failed, but not on SMTP: %s", line)
	}

	// Everything is back: the export completes on its next try.
	smtpProxy.Remove("drop")
	healed := time.Now()
	for who, c := range map[string]*conn{"ann": pr.a, "bob": pr.b} {
		if f := c.next("transcript"); f.URL != "/transcripts/"+pr.session {
			t.Fatalf("%s: transcript url %q", who, f.URL)
		}
	}
	t.Logf("transcript announced %s after the network healed, %s after the end, after %d failed tries",
		time.Since(healed).Round(time.Millisecond), time.Since(ended).Round(time.Millisecond), failures())
	for _, who := range []string{pr.ann.email, pr.bob.email} {
		if mails := p.mailTo(t, who); len(mails) != 1 {
			t.Fatalf("Mailpit holds %d emails to %s, want 1", len(mails), who)
		}
	}
	body := pr.bob.download(t, "/transcripts/"+pr.session, p.s3.Endpoint)
	for _, text := range []string{"hello through a flaky network", "the transcript must still arrive"} {
		if !strings.Contains(string(body), text) {
			t.Fatalf("the transcript lacks %q:\n%s", text, body)
		}
	}
	if keys := p.s3Keys(t); len(keys) != 1 {
		t.Fatalf("S3 holds %q under the test's prefix, want one transcript", keys)
	}
}

// lastLine returns the last line of logs that contains s.
func lastLine(logs, s string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
