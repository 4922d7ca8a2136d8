package bench

import (
	"strings"
	"testing"
)

// TestParseOutboxRefusesOtherShapes: an answer from /dev/mail.json whose shape has
// changed is an error naming the shape, never an outbox that merely seems empty.
func TestParseOutboxRefusesOtherShapes(t *testing.T) {
	mails, err := parseOutbox([]byte(`{"mails":[{"name":"x","to":"ann@example.org","links":["http://h/signin/tok"]}]}`))
	if err != nil || len(mails) != 1 || *mails[0].To != "ann@example.org" || (*mails[0].Links)[0] != "http://h/signin/tok" {
		t.Fatalf("the current shape: %v, %v", mails, err)
	}
	if mails, err := parseOutbox([]byte(`{"mails":[]}`)); err != nil || len(mails) != 0 {
		t.Fatalf("an empty outbox: %v, %v", mails, err)
	}
	for _, body := range []string{
		`<html><table class="mail-list"></table></html>`,
		`{"emails":[]}`,
		`{"mails":[{"recipient":"ann@example.org","links":[]}]}`,
		`{"mails":[{"to":"ann@example.org","urls":[]}]}`,
		`{"mails":{"to":"ann@example.org"}}`,
	} {
		if _, err := parseOutbox([]byte(body)); err == nil {
			t.Errorf("%s: accepted", body)
		} else if !strings.Contains(err.Error(), "mails") && !strings.Contains(err.Error(), "JSON") {
			t.Errorf("%s: error %q does not say what is wrong", body, err)
		}
	}
}
