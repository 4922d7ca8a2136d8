package outbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
)

func newOutbox(t *testing.T) *Outbox {
	t.Helper()
	o, err := New(Options{Dir: filepath.Join(t.TempDir(), "outbox"), From: "Parley <noreply@parley.test>"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestSendAndRead(t *testing.T) {
	ctx := context.Background()
	o := newOutbox(t)
	e := chat.Email{
		To:      "bob@example.com",
		Subject: "Your Parley chat in room r — transcript",
		Text:    "Hello Bob,\nlink: http://127.0.0.1:8080/transcripts/abc\nünïcode",
		HTML:    "<p>Hello &lt;Bob&gt;</p>",
	}
	if err := o.Send(ctx, e); err != nil {
		t.Fatal(err)
	}
	list, err := List(o.Dir(), 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want one email", list, err)
	}
	if strings.Contains(list[0].Name, "bob") || !ValidName(list[0].Name) {
		t.Fatalf("file name %q must be time-based and hold no address", list[0].Name)
	}
	got, err := Read(o.Dir(), list[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.To != "bob@example.com" {
		t.Errorf("To = %q", got.To)
	}
	if got.Subject != e.Subject {
		t.Errorf("Subject = %q, want %q", got.Subject, e.Subject)
	}
	if strings.TrimRight(got.Text, "\n") != e.Text {
		t.Errorf("Text = %q, want %q", got.Text, e.Text)
	}
	if strings.TrimSpace(got.HTML) != e.HTML {
		t.Errorf("HTML = %q, want %q", got.HTML, e.HTML)
	}
	if got.Headers.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", got.Headers.Get("Auto-Submitted"))
	}
	if got.MessageID == "" || got.Time.IsZero() {
		t.Errorf("Message-ID %q / Date %v missing", got.MessageID, got.Time)
	}
}

func TestNoHeaderInjection(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		email   chat.Email
		wantErr string // error code, "" when the email is written
	}{
		{"SubjectCRLF", chat.Email{To: "a@example.com", Subject: "hi\r\nBcc: evil@example.com", Text: "x"}, ""},
		{"SubjectLF", chat.Email{To: "a@example.com", Subject: "hi\nBcc: evil@example.com", Text: "x"}, ""},
		{"AddressCRLF", chat.Email{To: "a@example.com\r\nBcc: evil@example.com", Subject: "s", Text: "x"}, chat.EPermanent},
		{"AddressList", chat.Email{To: "a@example.com, evil@example.com", Subject: "s", Text: "x"}, chat.EPermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutbox(t)
			err := o.Send(ctx, tc.email)
			if chat.ErrorCode(err) != tc.wantErr {
				t.Fatalf("Send: %v, want code %q", err, tc.wantErr)
			}
			entries, _ := os.ReadDir(o.Dir())
			for _, ent := range entries {
				raw, _ := os.ReadFile(filepath.Join(o.Dir(), ent.Name()))
				head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
				for _, line := range strings.Split(string(head), "\r\n") {
					if strings.HasPrefix(strings.ToLower(line), "bcc:") {
						t.Fatalf("injected header line %q in:\n%s", line, head)
					}
				}
				got, err := Read(o.Dir(), ent.Name())
				if err != nil {
					t.Fatal(err)
				}
				if len(got.Headers["Bcc"]) > 0 {
					t.Fatalf("Bcc header present: %v", got.Headers["Bcc"])
				}
			}
		})
	}
}

func TestListNewestFirst(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	o, err := New(Options{Dir: t.TempDir(), Now: func() time.Time { at = at.Add(time.Second); return at }})
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"one", "two", "three"} {
		if err := o.Send(ctx, chat.Email{To: "a@example.com", Subject: subj, Text: subj}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := List(o.Dir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Subject != "three" || list[1].Subject != "two" {
		t.Fatalf("List = %+v, want three, two", list)
	}
}

func TestReadRejectsOtherNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"../etc/passwd", "x.eml", "", ".tmp-1", "20261127T130000.000000000Z-0000000g.eml"} {
		if _, err := Read(dir, name); !chat.IsCode(err, chat.ENotFound) {
			t.Errorf("Read(%q): %v, want not_found", name, err)
		}
	}
}
