package wire

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"parley/internal/chat"
)

// encodeFastCases are strings that take each path of appendJSONString.
var encodeFastCases = []string{
	"", "hello", "c-1234567890", "a@x.org", `say "hi"`, `back\slash`, "<b>&amp;</b>",
	"line\nbreak\ttab\x00nul", "héllo wörld", "emoji 😀", "\u2028\u2029", "bad \xff utf-8", "\x7f del",
}

// TestEncodeFastMatchesJSON: the hand-written message and ack frames are byte for byte
// what encoding/json makes of the frame structs, whatever the strings hold.
func TestEncodeFastMatchesJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	for _, s := range encodeFastCases {
		checkEncodeFast(t, s, at, 42)
	}
	checkEncodeFast(t, "x", time.Time{}, 0)
	checkEncodeFast(t, "x", time.Date(12026, 1, 2, 3, 4, 5, 999999999, time.UTC), 1) // five-digit year
	checkEncodeFast(t, "x", time.Date(-7, 12, 31, 23, 59, 59, 1000, time.UTC), 2)    // before year 0
	checkEncodeFast(t, "x", time.Date(2026, 12, 31, 23, 59, 59, 999, time.FixedZone("y", -7200)), 3)
	checkEncodeFast(t, "x", chat.Now(), -1)
}

func checkEncodeFast(t *testing.T, s string, at time.Time, seq int64) {
	t.Helper()
	m := chat.Message{Seq: seq, ClientID: s, From: s + "@x.org", To: "b@x.org", Kind: chat.Kind(s), Text: s, CreatedAt: at}
	want := mustEncode(messageFrame{Type: TypeMessage, Seq: m.Seq, ID: m.ClientID, From: m.From,
		To: m.To, Text: m.Text, Kind: string(m.Kind), At: FormatAt(m.CreatedAt)})
	if got := Message(m); !bytes.Equal(got, want) {
		t.Errorf("Message(%q):\n got %s\nwant %s", s, got, want)
	}
	wantAck := mustEncode(ackFrame{Type: TypeAck, ID: s, Seq: seq})
	if got := Ack(s, seq); !bytes.Equal(got, wantAck) {
		t.Errorf("Ack(%q):\n got %s\nwant %s", s, got, wantAck)
	}
}

func FuzzEncodeFast(f *testing.F) {
	for _, s := range encodeFastCases {
		f.Add(s, int64(7))
	}
	f.Fuzz(func(t *testing.T, s string, seq int64) {
		checkEncodeFast(t, s, time.Unix(seq%(1<<33), seq%1e9), seq)
		var back Frame
		if err := json.Unmarshal(Message(chat.Message{Text: s}), &back); err != nil || (utf8.ValidString(s) && back.Text != s) {
			t.Errorf("%q does not read back: %v %q", s, err, back.Text)
		}
	})
}

func BenchmarkEncodeAck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Ack("c-1234567890", 42)
	}
}
