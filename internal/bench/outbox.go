package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// A server signing people in by emailed link, in development mode, keeps its emails in
// an outbox it lists for programs at /dev/mail.json. signInFromOutbox does what a
// developer does at /dev/mail: open the newest email to the address, follow its sign-in
// link and press the button (POST /signin), which answers 303 with the session cookie.
// Against a server that sends real email the bench cannot sign in; run that one with
// PARLEY_AUTH=trust.

// outboxJSON is the part of GET /dev/mail.json the bench reads. The fields are pointers
// so that a missing one is told apart from an empty one: a server whose answer has
// another shape is reported as such, not as "no email".
type outboxJSON struct {
	Mails *[]outboxEmail `json:"mails"` // newest first
}

// outboxEmail is one email of outboxJSON.
type outboxEmail struct {
	To    *string   `json:"to"`
	Links *[]string `json:"links"` // the http(s) URLs in its text
}

// signInLinkPath is what a sign-in link's path starts with; the token follows it.
const signInLinkPath = "/signin/"

// signInFromOutbox signs email in through the development outbox and returns the
// cookies the sign-in set.
func (s *site) signInFromOutbox(ctx context.Context, email string) ([]*http.Cookie, error) {
	token, err := s.signInToken(ctx, email)
	if err != nil {
		return nil, err
	}
	form := url.Values{"token": {token}}
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

// signInToken returns the token of the newest sign-in link emailed to email.
func (s *site) signInToken(ctx context.Context, email string) (string, error) {
	path := "/dev/mail.json?to=" + url.QueryEscape(email)
	body, err := s.get(ctx, path)
	if err != nil {
		return "", err
	}
	mails, err := parseOutbox(body)
	if err != nil {
		return "", &codedError{code: "outbox_shape", err: fmt.Errorf("GET %s: %w", path, err)}
	}
	for _, m := range mails { // newest first
		if !strings.EqualFold(*m.To, email) {
			continue
		}
		for _, link := range *m.Links {
			_, rest, ok := strings.Cut(link, signInLinkPath)
			// The link may carry where to go after signing in (?next=…); the token is the path.
			if token, _, _ := strings.Cut(rest, "?"); ok && token != "" {
				return token, nil
			}
		}
		return "", &codedError{code: "signin_no_link", err: fmt.Errorf("the newest email to %s holds no sign-in link", email)}
	}
	return "", &codedError{code: "signin_no_email", err: fmt.Errorf("no sign-in email to %s in the server's outbox", email)}
}

// parseOutbox decodes GET /dev/mail.json, refusing an answer without the fields the
// bench relies on.
func parseOutbox(body []byte) ([]outboxEmail, error) {
	var o outboxJSON
	if err := json.Unmarshal(body, &o); err != nil {
		return nil, fmt.Errorf("not the outbox's JSON: %w: %.200s", err, bytes.TrimSpace(body))
	}
	if o.Mails == nil {
		return nil, fmt.Errorf(`no "mails" list: %.200s`, bytes.TrimSpace(body))
	}
	for i, m := range *o.Mails {
		if m.To == nil || m.Links == nil {
			return nil, fmt.Errorf(`email %d lacks "to" or "links": %.200s`, i, bytes.TrimSpace(body))
		}
	}
	return *o.Mails, nil
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
