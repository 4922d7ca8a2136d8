package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"parley/internal/outbox"
)

// secretValue returns a random string that cannot turn up anywhere by chance.
func secretValue(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// browserClient is an HTTP client that keeps no cookies and follows no redirects:
// the test passes cookies itself, as a browser's jar would.
var browserClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send makes a request as a page of the site would and returns status, cookies, body.
func send(t *testing.T, method, u string, form url.Values, cookie string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	res, err := browserClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestSecretsStayOutOfLogs runs the real binary with sign-in by emailed link through a
// whole chat (sign-in emails, links used and reused, messages, the end, the
// transcript) and through failures (an SMTP server that is not there, a database
// that is not there), then scans everything the processes logged for the cookie key,
// the passwords, the sign-in tokens, the cookie values and the message texts.
func TestSecretsStayOutOfLogs(t *testing.T) {
	cookieKey := hex.EncodeToString([]byte(secretValue("k"))) // 50 hex characters, 25 bytes: pad below
	cookieKey = (cookieKey + cookieKey)[:64]
	dir := t.TempDir()
	srv := startServer(t, dir, "PARLEY_AUTH=email-link", "PARLEY_COOKIE_KEY="+cookieKey, "PARLEY_LOG_LEVEL=debug")

	var secrets []string // everything that must never be logged
	secrets = append(secrets, cookieKey)
	texts := []string{secretValue("host-says-"), secretValue("guest-says-")}
	secrets = append(secrets, texts...)

	signIn := func(email string) (cookie string) {
		t.Helper()
		res, body := send(t, http.MethodPost, srv.URL+"/join", url.Values{"room": {"vault"}, "email": {email}}, "")
		if res.StatusCode != http.StatusOK || !strings.Contains(body, "Check your email") {
			t.Fatalf("join as %s: %d\n%s", email, res.StatusCode, body)
		}
		token := latestSignInToken(t, filepath.Join(dir, "outbox"), email)
		secrets = append(secrets, token)
		if res, _ := send(t, http.MethodGet, srv.URL+"/signin/"+token, nil, ""); res.StatusCode != http.StatusOK {
			t.Fatalf("open link: %d", res.StatusCode)
		}
		res, _ = send(t, http.MethodPost, srv.URL+"/signin", url.Values{"token": {token}}, "")
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign in as %s: %d", email, res.StatusCode)
		}
		for _, c := range res.Cookies() {
			if c.Name == "parley_session" {
				cookie = c.Name + "=" + c.Value
				secrets = append(secrets, c.Value)
			}
		}
		// The used link is refused, and the refusal does not show it.
		res, body = send(t, http.MethodPost, srv.URL+"/signin", url.Values{"token": {token}}, "")
		if res.StatusCode != http.StatusNotFound || strings.Contains(body, token) {
			t.Fatalf("reused link: %d, body shows token: %v", res.StatusCode, strings.Contains(body, token))
		}
		return cookie
	}
	host := &person{t: t, base: srv.URL, email: "host@example.org", room: "vault", cookie: signIn("host@example.org")}
	guest := &person{t: t, base: srv.URL, email: "guest@example.org", room: "vault", cookie: signIn("guest@example.org")}

	hc, welcome := host.mustDial("")
	gc, _ := guest.mustDial("")
	hc.say("h-1", texts[0])
	gc.say("g-1", texts[1])
	hc.send(map[string]string{"type": "end"})
	hc.next("ended")
	tr := hc.next("transcript")
	res, csv := send(t, http.MethodGet, srv.URL+tr.URL, nil, host.cookie)
	if res.StatusCode != http.StatusOK || !strings.Contains(csv, texts[1]) {
		t.Fatalf("transcript: %d\n%s", res.StatusCode, csv)
	}
	// A stranger's view of the transcript and of the history says nothing.
	stranger := signIn("stranger@example.org")
	if res, body := send(t, http.MethodGet, srv.URL+"/transcripts/"+welcome.Session, nil, stranger); res.StatusCode != http.StatusNotFound || strings.Contains(body, texts[0]) {
		t.Fatalf("stranger transcript: %d", res.StatusCode)
	}
	if res, _ := send(t, http.MethodGet, srv.URL+"/history?email=host@example.org", nil, stranger); res.StatusCode != http.StatusForbidden {
		t.Fatalf("stranger history: %d", res.StatusCode)
	}
	srv.Stop()

	// Failures: mail through an SMTP server that is not there, with a password.
	smtpPass := secretValue("smtp-pass-")
	dbPass := secretValue("db-pass-")
	secrets = append(secrets, smtpPass, dbPass)
	dir2 := t.TempDir()
	mailless := startServer(t, dir2, "PARLEY_AUTH=email-link", "PARLEY_LOG_LEVEL=debug",
		"PARLEY_SMTP_URL=smtp://parley:"+smtpPass+"@"+freeAddr(t)+"?tls=none")
	res, body := send(t, http.MethodPost, mailless.URL+"/join", url.Values{"room": {"r"}, "email": {"a@example.org"}}, "")
	if res.StatusCode == http.StatusOK || strings.Contains(body, smtpPass) {
		t.Fatalf("join without a mail server: %d\n%s", res.StatusCode, body)
	}
	mailless.Stop()

	// A database that is not there stops the start; its message names it without the password.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve")
	cmd.Env = append(cleanEnv(), "PARLEY_ADDR="+freeAddr(t), "PARLEY_DATA_DIR="+t.TempDir(), "PARLEY_LOG_LEVEL=debug",
		"PARLEY_MYSQL_DSN=parley:"+dbPass+"@tcp("+freeAddr(t)+")/parley?timeout=2s")
	dbOut, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("parley started without its database")
	}

	logs := map[string]string{"chat": srv.logs.String(), "no smtp": mailless.logs.String(), "no database": string(dbOut)}
	for name, log := range logs {
		if log == "" {
			t.Fatalf("%s: nothing was logged; the scan would prove nothing", name)
		}
		for _, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("%s: the logs contain a secret %.12s…", name, s)
			}
		}
		if presigned.MatchString(log) {
			t.Errorf("%s: the logs contain a presigned URL", name)
		}
	}
	if !strings.Contains(logs["no smtp"], "sign-in email") {
		t.Errorf("the failed sign-in email was not logged at all:\n%s", logs["no smtp"])
	}
	if t.Failed() {
		for name, log := range logs {
			t.Logf("%s logs:\n%s", name, log)
		}
	}
}

// presigned matches the query of an S3 presigned URL.
var presigned = regexp.MustCompile(`X-Amz-(Signature|Credential)=`)

var tokenInLink = regexp.MustCompile(`/signin/([A-Za-z0-9_-]{43})`)

// latestSignInToken reads the token of the newest sign-in email to email in the outbox.
func latestSignInToken(t *testing.T, dir, email string) string {
	t.Helper()
	list, err := outbox.List(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.To != email {
			continue
		}
		mail, err := outbox.Read(dir, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if match := tokenInLink.FindStringSubmatch(mail.Text); match != nil {
			return match[1]
		}
	}
	t.Fatalf("no sign-in email to %s in %s", email, dir)
	return ""
}
