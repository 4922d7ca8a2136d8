package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"parley/internal/chat"
)

func TestDecodeClientFrame(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  ClientFrame
		valid bool
	}{
		{"Send", `{"type":"send","id":"c-1","text":"hi"}`, ClientFrame{Type: "send", ID: "c-1", Text: "hi"}, true},
		{"Read", `{"type":"read","seq":40}`, ClientFrame{Type: "read", Seq: 40}, true},
		{"SeqNotANumber", `{"type":"received","seq":"4"}`, ClientFrame{}, false},
		{"ExtraFieldsIgnored", `{"type":"end","later":1}`, ClientFrame{Type: "end"}, true},
		{"NoType", `{"id":"c"}`, ClientFrame{}, false},
		{"NotJSON", `hello`, ClientFrame{}, false},
		{"Array", `[]`, ClientFrame{}, false},
		{"NumberText", `{"type":"send","id":"x","text":1}`, ClientFrame{}, false},
		{"NotUTF8", "{\"type\":\"send\",\"id\":\"x\",\"text\":\"\xff\"}", ClientFrame{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeClient([]byte(tt.in))
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
		{"Message", Message(m), `{"type":"message","seq":42,"id":"c-1","from":"a@x.org","to":"b@x.org","text":"hello \u003cb\u003e","kind":"chat","at":"2026-11-27T11:00:00.123456Z"}`},
		{"MessageWholeSecond", Message(chat.Message{CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}), `{"type":"message","seq":0,"id":"","from":"","to":"","text":"","kind":"","at":"2026-01-02T03:04:05.000000Z"}`},
		{"WelcomeNoPeer", Welcome(sess, chat.RoleHost, "a@x.org", 0), `{"type":"welcome","session":"s1","room":"r","role":"host","you":"a@x.org","peer":null,"status":"inprogress","last_seq":0}`},
		{"Ack", Ack("c-1", 42), `{"type":"ack","id":"c-1","seq":42}`},
		{"Presence", Presence("b@x.org", false), `{"type":"presence","email":"b@x.org","online":false}`},
		{"Ended", Ended("a@x.org"), `{"type":"ended","by":"a@x.org"}`},
		{"Transcript", Transcript("/transcripts/s1"), `{"type":"transcript","url":"/transcripts/s1"}`},
		{"Error", Error(chat.Errorf(chat.ERoomFull, "Room r is full."), ""), `{"type":"error","code":"room_full","message":"Room r is full."}`},
		{"RateLimitedRetry", ErrorRetry(chat.Errorf(chat.ERateLimited, "Slow down."), "c-3", 1500*time.Millisecond), `{"type":"error","code":"rate_limited","message":"Slow down.","id":"c-3","retry_after_ms":1500}`},
		{"Typing", Typing("a@x.org"), `{"type":"typing","from":"a@x.org"}`},
		{"Receipt", Receipt("b@x.org", chat.Cursor{Received: 42, Read: 40}), `{"type":"receipt","by":"b@x.org","received":42,"read":40}`},
		{"WelcomeReceiptsNoPeer", WelcomeReceipts(sess, chat.RoleHost, "a@x.org", 2, nil), `{"type":"welcome","session":"s1","room":"r","role":"host","you":"a@x.org","peer":null,"status":"inprogress","last_seq":2,"receipts":{"a@x.org":{"received":0,"read":0}}}`},
		{"PresenceDegraded", PresenceDegraded("b@x.org", false, "presence"), `{"type":"presence","email":"b@x.org","online":false,"degraded":"presence"}`},
		{"InternalErrorHidesDetail", Error(chat.Wrap(chat.EInternal, errSecret, "boom"), "c-9"), `{"type":"error","code":"internal","message":"Something went wrong on our side. Please try again.","id":"c-9"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Fatalf("got  %s\nwant %s", tt.got, tt.want)
			}
		})
	}
	sess.ParticipantEmail = "b@x.org"
	if w := string(Welcome(sess, chat.RoleHost, "a@x.org", 3)); !strings.Contains(w, `"peer":"b@x.org"`) {
		t.Fatal(w)
	}
	w := WelcomeReceipts(sess, chat.RoleHost, "a@x.org", 42, map[string]chat.Cursor{"b@x.org": {Received: 42, Read: 40}})
	var f Frame
	if err := json.Unmarshal(w, &f); err != nil {
		t.Fatal(err)
	}
	if f.Receipts["a@x.org"] != (Cursor{}) || f.Receipts["b@x.org"] != (Cursor{Received: 42, Read: 40}) || f.LastSeq != 42 {
		t.Fatalf("%s", w)
	}
}

var errSecret = chat.Errorf(chat.EInternal, "password=hunter2")

func BenchmarkDecodeClientFrame(b *testing.B) {
	data := []byte(`{"type":"send","id":"c-1234567890","text":"` + strings.Repeat("hello ", 20) + `"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClient(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := chat.Message{SessionID: "s", Seq: 42, ClientID: "c-1234567890", From: "alice@example.org",
		To: "bob@example.org", Kind: chat.KindChat, Text: strings.Repeat("hello ", 20), CreatedAt: chat.Now()}
	b.ReportAllocs()
	for b.Loop() {
		_ = Message(m)
	}
}

// TestDecodeSendFast checks which send frames skip encoding/json: the exact form
// browsers and parley bench write does; anything JSON would decode differently from
// its bytes (escapes), or that needs JSON's rules (white space, other orders, repeated
// keys), does not, and DecodeClient still reads it right.
func TestDecodeSendFast(t *testing.T) {
	tests := []struct {
		name, frame string
		fast        bool
		want        ClientFrame
	}{
		{"Browser", `{"type":"send","id":"c-1","text":"héllo 😀 <b>"}`, true, ClientFrame{TypeSend, "c-1", "héllo 😀 <b>", 0}},
		{"Escapes", `{"type":"send","id":"c-1","text":"a \"b\"\n"}`, false, ClientFrame{TypeSend, "c-1", "a \"b\"\n", 0}},
		{"WhiteSpace", `{"type": "send", "id": "c-1", "text": "x"}`, false, ClientFrame{TypeSend, "c-1", "x", 0}},
		{"OtherOrder", `{"id":"c-1","type":"send","text":"x"}`, false, ClientFrame{TypeSend, "c-1", "x", 0}},
		{"RepeatedKey", `{"type":"send","id":"c-1","text":"x","text":"y"}`, false, ClientFrame{TypeSend, "c-1", "y", 0}},
		{"Bye", `{"type":"bye","id":"c-2"}`, false, ClientFrame{Type: TypeBye, ID: "c-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, fast := DecodeSendFast([]byte(tt.frame)); fast != tt.fast {
				t.Fatalf("fast path taken = %v, want %v", fast, tt.fast)
			}
			got, err := DecodeClient([]byte(tt.frame))
			if err != nil || got != tt.want {
				t.Fatalf("DecodeClient = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// FuzzDecodeClient feeds any bytes to the client frame decoder: it never panics, the
// fast path reads exactly what encoding/json reads, and whatever it accepts is what the
// protocol allows: UTF-8 JSON with a type. Seeds are in testdata/fuzz/FuzzDecodeClient;
// `make fuzz` explores further.
func FuzzDecodeClient(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","id":"c-1","text":"hello"}`, `{"type":"bye","id":"c-2"}`, `{"type":"end"}`,
		`{"type":""}`, `{}`, `null`, `[]`, `"send"`, `{"type":"send","text":"\ud800"}`,
		"{\"type\":\"send\",\"id\":\"c\",\"text\":\"\xff\"}", `{"type":1}`, `{"type":"send","type":"end"}`,
		`{"type":"send","id":"c-1","text":"a \"quote\" and \\n"}`, `{"type":"send","id":"c-1","text":"hé 😀"}`,
		`{"type":"send","id":"c-1","text":"x"} `, `{"type":"send","id":"c-1","text":"x","id":"c-2"}`,
		`{"type":"send","id":"c-1","text":"tab\there"}`, "{\"type\":\"send\",\"id\":\"c\",\"text\":\"\t\"}",
		`{"type":"typing"}`, `{"type":"received","seq":42}`, `{"type":"read","seq":0}`, `{"type":"read","seq":007}`,
		`{"type":"read","seq":-1}`, `{"type":"read","seq":999999999999999999}`, `{"type":"read","seq":1.5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if fast, ok := DecodeSendFast(data); ok && utf8.Valid(data) {
			var slow ClientFrame
			if err := json.Unmarshal(data, &slow); err != nil || slow != fast {
				t.Fatalf("fast path read %q as %+v; encoding/json: %+v, %v", data, fast, slow, err)
			}
		}
		if fast, ok := DecodeSignalFast(data); ok {
			var slow ClientFrame
			if err := json.Unmarshal(data, &slow); err != nil || slow != fast {
				t.Fatalf("signal fast path read %q as %+v; encoding/json: %+v, %v", data, fast, slow, err)
			}
		}
		fr, err := DecodeClient(data)
		if err != nil {
			if chat.ErrorCode(err) != chat.EInvalidFrame {
				t.Fatalf("refusal with code %q, want invalid_frame", chat.ErrorCode(err))
			}
			return
		}
		if fr.Type == "" {
			t.Fatal("accepted a frame without a type")
		}
		if !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted a frame that is not UTF-8 JSON: %q", data)
		}
		if !utf8.ValidString(fr.Type) || !utf8.ValidString(fr.ID) || !utf8.ValidString(fr.Text) {
			t.Fatal("decoded fields are not UTF-8")
		}
	})
}

// FuzzDecodeView: wherever encoding/json accepts a server frame, the scanner reads the
// same fields from it.
func FuzzDecodeView(f *testing.F) {
	for _, seed := range []string{
		`{"type":"message","seq":42,"id":"c-1","from":"a@x.org","to":"b@x.org","text":"hi \"x\"","kind":"chat","at":"2026-11-27T12:00:00Z"}`,
		`{"type":"welcome","session":"s1","peer":null,"last_seq":41}`,
		`{"type":"error","code":"room_full","message":"full"}`, `{"type":"ack","id":"c-1","seq":7}`,
		`{"Type":"x","SEQ":3}`, `{"a":{"b":[1,{"c":2}]},"type":"y"}`, ` { "type" : "error" , "code" : "x" } `,
		`{"type":"message","id":"a\u002db","seq":1}`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want ViewJSON
		var v View
		if json.Unmarshal(data, &want) != nil {
			return
		}
		if err := DecodeView(data, &v); err != nil || v.Strings() != want {
			t.Errorf("%q: got %+v (%v), encoding/json %+v", data, v.Strings(), err, want)
		}
	})
}

// TestEncodedFramesDecode: every encoded server frame reads back through Frame and
// View with the same fields, so clients of either decoder see what the server meant.
func TestEncodedFramesDecode(t *testing.T) {
	m := chat.Message{Seq: 7, ClientID: "c-7", From: "a@x.org", To: "b@x.org", Kind: chat.KindChat, Text: "hi", CreatedAt: chat.Now()}
	for _, data := range [][]byte{Message(m), Ack("c-7", 7), Error(chat.Errorf(chat.ERoomFull, "full"), "")} {
		var f Frame
		var v View
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if err := DecodeView(data, &v); err != nil {
			t.Fatal(err)
		}
		if got := v.Strings(); got.Type != f.Type || got.Seq != f.Seq || got.ID != f.ID || got.From != f.From || got.Code != f.Code {
			t.Errorf("%s: view %+v, frame %+v", data, got, f)
		}
	}
}

// TestDecodeAllocations checks what decoding the frames every message and signal
// costs in allocations: a typing or receipt signal none, a send frame one string
// that holds its id and its text, and nothing else (the frame is returned by value: a
// frame variable that json.Unmarshal's branch takes the address of would move to the
// heap for every frame).
func TestDecodeAllocations(t *testing.T) {
	for _, c := range []struct {
		frame string
		want  float64
	}{
		{`{"type":"typing"}`, 0},
		{`{"type":"read","seq":42}`, 0},
		{`{"type":"send","id":"c-1","text":"` + strings.Repeat("hello ", 20) + `"}`, 1},
	} {
		data := []byte(c.frame)
		if got := testing.AllocsPerRun(100, func() {
			if _, err := DecodeClient(data); err != nil {
				t.Fatal(err)
			}
		}); got != c.want {
			t.Errorf("decoding %s: %v allocations, want %v", c.frame, got, c.want)
		}
	}
}
