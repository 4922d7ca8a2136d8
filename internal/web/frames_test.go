package web

import (
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
)

func TestDecodeClientFrame(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  clientFrame
		valid bool
	}{
		{"Send", `{"type":"send","id":"c-1","text":"hi"}`, clientFrame{"send", "c-1", "hi"}, true},
		{"ExtraFieldsIgnored", `{"type":"end","later":1}`, clientFrame{Type: "end"}, true},
		{"NoType", `{"id":"c"}`, clientFrame{}, false},
		{"NotJSON", `hello`, clientFrame{}, false},
		{"Array", `[]`, clientFrame{}, false},
		{"NumberText", `{"type":"send","id":"x","text":1}`, clientFrame{}, false},
		{"NotUTF8", "{\"type\":\"send\",\"id\":\"x\",\"text\":\"\xff\"}", clientFrame{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeClientFrame([]byte(tt.in))
			if tt.valid != (err == nil) || got != tt.want {
				t.Fatalf("got %+v, %v", got, err)
			}
			if err != nil && !chat.IsCode(err, chat.EInvalidFrame) {
				t.Fatalf("code %s", chat.ErrorCode(err))
			}
		})
	}
}

func TestEncodeServerFrames(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.FixedZone("CET", 3600))
	m := chat.Message{SessionID: "s", Seq: 42, ClientID: "c-1", From: "a@x.org", To: "b@x.org",
		Kind: chat.KindChat, Text: "hello <b>", CreatedAt: at}
	sess := &chat.Session{ID: "s1", Room: "r", HostEmail: "a@x.org", Status: chat.StatusInProgress}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"Message", encodeMessage(m), `{"type":"message","seq":42,"id":"c-1","from":"a@x.org","to":"b@x.org","text":"hello \u003cb\u003e","kind":"chat","at":"2026-11-27T11:00:00.123456Z"}`},
		{"MessageWholeSecond", encodeMessage(chat.Message{CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}), `{"type":"message","seq":0,"id":"","from":"","to":"","text":"","kind":"","at":"2026-01-02T03:04:05.000000Z"}`},
		{"WelcomeNoPeer", encodeWelcome(sess, chat.RoleHost, "a@x.org", 0), `{"type":"welcome","session":"s1","room":"r","role":"host","you":"a@x.org","peer":null,"status":"inprogress","last_seq":0}`},
		{"Ack", encodeAck("c-1", 42), `{"type":"ack","id":"c-1","seq":42}`},
		{"Presence", encodePresence("b@x.org", false), `{"type":"presence","email":"b@x.org","online":false}`},
		{"Ended", encodeEnded("a@x.org"), `{"type":"ended","by":"a@x.org"}`},
		{"Transcript", encodeTranscript("/transcripts/s1"), `{"type":"transcript","url":"/transcripts/s1"}`},
		{"Error", encodeError(chat.Errorf(chat.ERoomFull, "Room r is full."), ""), `{"type":"error","code":"room_full","message":"Room r is full."}`},
		{"InternalErrorHidesDetail", encodeError(chat.Wrap(chat.EInternal, errSecret, "boom"), "c-9"), `{"type":"error","code":"internal","message":"Something went wrong on our side. Please try again.","id":"c-9"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Fatalf("got  %s\nwant %s", tt.got, tt.want)
			}
		})
	}
	sess.ParticipantEmail = "b@x.org"
	if w := string(encodeWelcome(sess, chat.RoleHost, "a@x.org", 3)); !strings.Contains(w, `"peer":"b@x.org"`) {
		t.Fatal(w)
	}
}

var errSecret = chat.Errorf(chat.EInternal, "password=hunter2")

func BenchmarkDecodeClientFrame(b *testing.B) {
	data := []byte(`{"type":"send","id":"c-1234567890","text":"` + strings.Repeat("hello ", 20) + `"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeClientFrame(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := chat.Message{SessionID: "s", Seq: 42, ClientID: "c-1234567890", From: "alice@example.org",
		To: "bob@example.org", Kind: chat.KindChat, Text: strings.Repeat("hello ", 20), CreatedAt: chat.Now()}
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeMessage(m)
	}
}

// TestDecodeSendFast checks which send frames skip encoding/json: the exact form
// browsers and parley bench write does; anything JSON would decode differently from
// its bytes (escapes), or that needs JSON's rules (white space, other orders, repeated
// keys), does not, and decodeClientFrame still reads it right.
func TestDecodeSendFast(t *testing.T) {
	tests := []struct {
		name, frame string
		fast        bool
		want        clientFrame
	}{
		{"Browser", `{"type":"send","id":"c-1","text":"héllo 😀 <b>"}`, true, clientFrame{frameSend, "c-1", "héllo 😀 <b>"}},
		{"Escapes", `{"type":"send","id":"c-1","text":"a \"b\"\n"}`, false, clientFrame{frameSend, "c-1", "a \"b\"\n"}},
		{"WhiteSpace", `{"type": "send", "id": "c-1", "text": "x"}`, false, clientFrame{frameSend, "c-1", "x"}},
		{"OtherOrder", `{"id":"c-1","type":"send","text":"x"}`, false, clientFrame{frameSend, "c-1", "x"}},
		{"RepeatedKey", `{"type":"send","id":"c-1","text":"x","text":"y"}`, false, clientFrame{frameSend, "c-1", "y"}},
		{"Bye", `{"type":"bye","id":"c-2"}`, false, clientFrame{Type: frameBye, ID: "c-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, fast := decodeSendFast([]byte(tt.frame)); fast != tt.fast {
				t.Fatalf("fast path taken = %v, want %v", fast, tt.fast)
			}
			got, err := decodeClientFrame([]byte(tt.frame))
			if err != nil || got != tt.want {
				t.Fatalf("decodeClientFrame = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
