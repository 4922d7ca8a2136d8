package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// A server signing people in by emailed link, in development mode, keeps its emails in
// an outbox it shows at /dev/mail. signInFromOutbox does what a developer does there:
// open the newest email to the address, follow its sign-in link and press the button
// (POST /signin), which answers 303 with the session cookie. Against a server that
// sends real email the bench cannot sign in; run that one with PARLEY_AUTH=trust.
var (
	// outboxRow finds an email's page in the outbox list by its recipient.
	outboxRow = regexp.MustCompile(`<td>([^<]*)</td><td><a href="/dev/mail/([^"]+)">`)
	// signInLink finds the sign-in link's token in an email's page.
	signInLink = regexp.MustCompile(`/signin/([A-Za-z0-9_-]+)`)
)

// signInFromOutbox signs email in through the development outbox and returns the
// cookies the sign-in set.
func (s *site) signInFromOutbox(ctx context.Context, email string) ([]*http.Cookie, error) {
	list, err := s.get(ctx, "/dev/mail")
	if err != nil {
		return nil, err
	}
	var name string
	for _, m := range outboxRow.FindAllSubmatch(list, -1) { // newest first
		if string(m[1]) == email {
			name = string(m[2])
			break
		}
	}
	if name == "" {
		return nil, &codedError{code: "signin_no_email", err: fmt.Errorf("no sign-in email to %s in the server's outbox", email)}
	}
	page, err := s.get(ctx, "/dev/mail/"+url.PathEscape(name))
	if err != nil {
		return nil, err
	}
	token := signInLink.FindSubmatch(page)
	if token == nil {
		return nil, &codedError{code: "signin_no_link", err: fmt.Errorf("the email to %s holds no sign-in link", email)}
	}
	form := url.Values{"token": {string(token[1])}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.origin+"/signin", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, &codedError{code: "signin_failed", err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		return nil, &codedError{code: "signin_" + fmt.Sprint(resp.StatusCode),
			err: fmt.Errorf("POST /signin for %s: %s (want 303 with a cookie)", email, resp.Status)}
	}
	return resp.Cookies(), nil
}

// get fetches one of the server's pages.
func (s *site) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.origin+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, &codedError{code: "outbox_failed", err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, &codedError{code: "outbox_" + fmt.Sprint(resp.StatusCode),
			err: fmt.Errorf("GET %s: %s %v: %.200s", path, resp.Status, err, bytes.TrimSpace(body))}
	}
	return body, nil
}
