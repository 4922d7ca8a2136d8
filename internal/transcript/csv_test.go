package transcript_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/transcript"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenMessages cover what a transcript must survive: unicode, commas, quotes,
// newlines, and cells a spreadsheet would run as formulas.
func goldenMessages() []chat.Message {
	at := time.Date(2026, 11, 27, 13, 5, 9, 123456000, time.UTC)
	base := chat.Message{SessionID: "s", From: "ana@example.com", To: "bo@example.com", Room: "golden", Kind: chat.KindChat}
	texts := []struct {
		id, text string
		kind     chat.Kind
	}{
		{"c1", "Hello, Bo! 👋", chat.KindChat},
		{"c2", `She said "hi" and left`, chat.KindChat},
		{"c3", "line one\nline two\r\nline three", chat.KindChat},
		{"c4", "Grüße aus Köln — 你好 — مرحبا", chat.KindChat},
		{"c5", "=HYPERLINK(\"http://evil.example\",\"click\")", chat.KindChat},
		{"c6", "+1 555 0100", chat.KindChat},
		{"c7", "-2+3", chat.KindChat},
		{"c8", "@SUM(A1:A2)", chat.KindChat},
		{"c9", "\tcmd|' /C calc'!A0", chat.KindChat},
		{"c10", "\rcarriage", chat.KindChat},
		{"=c11", "a cell that is fine = not first", chat.KindChat},
		{"c12", chat.ByeText, chat.KindBye},
	}
	out := make([]chat.Message, len(texts))
	for i, tx := range texts {
		m := base
		m.Seq, m.ClientID, m.Text, m.Kind = int64(i+1), tx.id, tx.text, tx.kind
		m.CreatedAt = at.Add(time.Duration(i) * time.Second)
		if i%2 == 1 {
			m.From, m.To = m.To, m.From
		}
		out[i] = m
	}
	out[5].To = "-dash@example.com" // even an address is defused if it starts with '-'
	return out
}

// goldenSession is the ended chat the golden messages belong to.
func goldenSession() *chat.Session {
	return &chat.Session{ID: "s", Room: "golden", HostEmail: "ana@example.com", ParticipantEmail: "bo@example.com",
		Status: chat.StatusEnding, InitiatedAt: time.Date(2026, 11, 27, 13, 5, 0, 0, time.UTC),
		EndedAt: time.Date(2026, 11, 27, 13, 6, 1, 987654000, time.UTC), EndedBy: "bo@example.com"}
}

func TestCSVGolden(t *testing.T) {
	var buf bytes.Buffer
	w, err := transcript.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	msgs := goldenMessages()
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteEnd(goldenSession()); err != nil {
		t.Fatal(err)
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(buf.Bytes())
	if sum.Messages != int64(len(msgs)) || sum.Size != int64(buf.Len()) || sum.SHA256 != hex.EncodeToString(h[:]) {
		t.Fatalf("summary %+v does not describe the %d bytes written", sum, buf.Len())
	}
	golden := filepath.Join("testdata", "transcript.golden.csv")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("CSV differs from %s (go test -update rewrites it):\n%s", golden, buf.Bytes())
	}
	checkRoundTrip(t, buf.Bytes(), msgs)
}

// checkRoundTrip reads the CSV back with encoding/csv: every message survives, with
// only the formula guard added.
func checkRoundTrip(t *testing.T, data []byte, msgs []chat.Message) {
	t.Helper()
	body, ok := bytes.CutPrefix(data, []byte(transcript.BOM))
	if !ok {
		t.Fatalf("the file does not start with the UTF-8 byte order mark: % x", data[:min(len(data), 8)])
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(msgs)+2 {
		t.Fatalf("%d rows, want header + %d + the end", len(rows), len(msgs))
	}
	end := rows[len(rows)-1]
	if !equal(end, []string{"", "", "2026-11-27T13:06:01Z", "bo@example.com", "ana@example.com", "golden", "ended", "Chat ended by bo@example.com"}) {
		t.Errorf("end row %q", end)
	}
	if got := rows[0]; !equal(got, transcript.Header) {
		t.Fatalf("header %q", got)
	}
	for i, m := range msgs {
		row := rows[i+1]
		// Every line break is written as CRLF, which encoding/csv reads back as LF.
		wantText := transcript.SafeCell(m.Text)
		wantText = strings.ReplaceAll(strings.ReplaceAll(wantText, "\r\n", "\n"), "\r", "\n")
		if row[7] != wantText || row[1] != transcript.SafeCell(m.ClientID) || row[4] != transcript.SafeCell(m.To) {
			t.Errorf("row %d = %q, want text %q", i+1, row, wantText)
		}
		if row[2] != m.CreatedAt.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z") {
			t.Errorf("row %d created_at %q", i+1, row[2])
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSafeCell(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Plain", "hello", "hello"},
		{"Empty", "", ""},
		{"Equals", "=1+1", "'=1+1"},
		{"Plus", "+1", "'+1"},
		{"Minus", "-1", "'-1"},
		{"At", "@x", "'@x"},
		{"Tab", "\tx", "'\tx"},
		{"CR", "\rx", "'\rx"},
		{"InnerEquals", "a=b", "a=b"},
		{"LeadingSpace", " =x", " =x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := transcript.SafeCell(tc.in); got != tc.want {
				t.Fatalf("SafeCell(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// memMessages is a MessageStore over a slice, for golden files of whole transcripts.
type memMessages struct {
	chat.MessageStore
	msgs []chat.Message
}

func (m memMessages) Messages(_ context.Context, _ string, after int64, limit int) ([]chat.Message, error) {
	var out []chat.Message
	for _, msg := range m.msgs {
		if msg.Seq > after && len(out) < limit {
			out = append(out, msg)
		}
	}
	return out, nil
}

// TestCSVGoldenWholeChats writes whole transcripts through Write: a chat whose host
// wrote before the participant entered (those rows name the participant too) and
// one that ended before anyone joined.
func TestCSVGoldenWholeChats(t *testing.T) {
	at := time.Date(2026, 3, 29, 0, 59, 58, 0, time.UTC)
	early := &chat.Session{ID: "e", Room: "early", HostEmail: "ana@example.com", ParticipantEmail: "bo@example.com",
		Status: chat.StatusCompleted, InitiatedAt: at, EndedAt: at.Add(5 * time.Minute), EndedBy: "bo@example.com"}
	alone := &chat.Session{ID: "a", Room: "alone", HostEmail: "ana@example.com",
		Status: chat.StatusEnding, InitiatedAt: at, EndedAt: at.Add(time.Minute), EndedBy: "ana@example.com"}
	msg := func(seq int64, from, to, text string) chat.Message {
		return chat.Message{SessionID: "e", Seq: seq, ClientID: fmt.Sprintf("c%d", seq), From: from, To: to, Room: "early",
			Kind: chat.KindChat, Text: text, CreatedAt: at.Add(time.Duration(seq) * time.Second)}
	}
	for _, tc := range []struct {
		name string
		sess *chat.Session
		msgs []chat.Message
	}{
		{"early", early, []chat.Message{
			msg(1, "ana@example.com", "", "Anyone here? 🙂"),
			msg(2, "ana@example.com", "", "I'll wait."),
			msg(3, "bo@example.com", "ana@example.com", "Here now — sorry!"),
		}},
		{"alone", alone, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			sum, err := transcript.Write(context.Background(), memMessages{msgs: tc.msgs}, tc.sess, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Messages != int64(len(tc.msgs)) {
				t.Errorf("summary counts %d messages, want %d (the end row is not one)", sum.Messages, len(tc.msgs))
			}
			golden := filepath.Join("testdata", "transcript-"+tc.name+".golden.csv")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("CSV differs from %s (go test -update rewrites it):\n%s", golden, buf.Bytes())
			}
		})
	}
}
