package smtpmail

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"parley/internal/chat"
	"parley/internal/testenv"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Options
	}{
		{"StartTLSDefault", "smtp://user:p%40ss@mail.example.com", Options{Host: "mail.example.com", Port: 587, Username: "user", Password: "p@ss", TLS: TLSStartTLS}},
		{"ImplicitTLS", "smtp://u:p@mail.example.com?tls=tls", Options{Host: "mail.example.com", Port: 465, Username: "u", Password: "p", TLS: TLSImplicit}},
		{"SMTPS", "smtps://mail.example.com:2465", Options{Host: "mail.example.com", Port: 2465, TLS: TLSImplicit}},
		{"NoTLSMailpit", "smtp://127.0.0.1:1025?tls=none", Options{Host: "127.0.0.1", Port: 1025, TLS: TLSNone}},
		{"NoTLSDefaultPort", "smtp://localhost?tls=none&timeout=5s&helo=parley.example", Options{Host: "localhost", Port: 25, TLS: TLSNone, Timeout: 5 * time.Second, HeloName: "parley.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURL(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.Timeout == 0 {
				tc.want.Timeout = DefaultTimeout
			}
			if got != tc.want {
				t.Fatalf("ParseURL = %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	for name, raw := range map[string]string{
		"WrongScheme":  "http://mail.example.com",
		"NoHost":       "smtp://",
		"BadTLS":       "smtp://mail.example.com?tls=nnone",
		"UnknownParam": "smtp://mail.example.com?tsl=none",
		"BadPort":      "smtp://mail.example.com:99999",
		"BadTimeout":   "smtp://mail.example.com?timeout=soon",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseURL(raw); !chat.IsCode(err, chat.EInvalid) {
				t.Fatalf("ParseURL(%q) = %v; want %s", raw, err, chat.EInvalid)
			}
		})
	}
}

func TestStringMasksPassword(t *testing.T) {
	o, err := ParseURL("smtp://user:s3cret-pw@mail.example.com:587")
	if err != nil {
		t.Fatal(err)
	}
	o.From = "noreply@example.com"
	for _, s := range []string{o.String(), fmt.Sprint(o), o.LogValue().String()} {
		if strings.Contains(s, "s3cret-pw") || !strings.Contains(s, "user:xxxxx@mail.example.com:587") {
			t.Fatalf("printed options %q leak or lose something", s)
		}
	}
}

func TestNewChecksAddresses(t *testing.T) {
	base := Options{Host: "127.0.0.1", TLS: TLSNone}
	tests := []struct {
		name          string
		from, replyTo string
		ok            bool
	}{
		{"OK", "noreply@example.com", "", true},
		{"DisplayName", "Parley <noreply@example.com>", "help@example.com", true},
		{"NoFrom", "", "", false},
		{"BadFrom", "not an address", "", false},
		{"BadReplyTo", "noreply@example.com", "nope", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.From, o.ReplyTo = tc.from, tc.replyTo
			_, err := New(o)
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v; want ok %v", err, tc.ok)
			}
		})
	}
}

// mailpitMessage is the part of Mailpit's GET /api/v1/message/{ID} answer checked here.
type mailpitMessage struct {
	ID        string
	MessageID string
	Subject   string
	Text      string
	HTML      string
	From      struct{ Address string }
	ReplyTo   []struct{ Address string }
	To        []struct{ Address string }
	Bcc       []struct{ Address string }
}

func mailerFor(t *testing.T, addr string) *Mailer {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	m, err := New(Options{
		Host: host, Port: p, TLS: TLSNone, Timeout: 5 * time.Second,
		From: "Parley <noreply@parley.example>", ReplyTo: "help@parley.example",
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSendToMailpit(t *testing.T) {
	m := mailerFor(t, testenv.SMTPAddr(t))
	api := testenv.MailpitURL(t)
	to := strings.ToLower(testenv.UniqueName(t, "rcpt")) + "@example.com"
	e := chat.Email{
		To:      to,
		Subject: "Your chat transcript\r\nBcc: evil@example.com",
		Text:    "Download: https://parley.example/transcripts/abc\n",
		HTML:    `<p>Download: <a href="https://parley.example/transcripts/abc">transcript</a> &amp; more</p>`,
	}
	if err := m.Send(context.Background(), e); err != nil {
		t.Fatalf("Send: %v", err)
	}
	id := awaitMailpit(t, api, to)
	var got mailpitMessage
	getJSON(t, api+"/api/v1/message/"+id, &got)
	var headers map[string][]string
	getJSON(t, api+"/api/v1/message/"+id+"/headers", &headers)

	if len(got.To) != 1 || got.To[0].Address != to || got.From.Address != "noreply@parley.example" {
		t.Errorf("From %v To %v", got.From, got.To)
	}
	if len(got.ReplyTo) != 1 || got.ReplyTo[0].Address != "help@parley.example" {
		t.Errorf("Reply-To = %v", got.ReplyTo)
	}
	if got.Subject != "Your chat transcript Bcc: evil@example.com" {
		t.Errorf("Subject = %q", got.Subject)
	}
	if len(got.Bcc) != 0 || headers["Bcc"] != nil {
		t.Errorf("a CR/LF in the subject added a Bcc header: %v %v", got.Bcc, headers["Bcc"])
	}
	if strings.TrimSpace(got.Text) != strings.TrimSpace(e.Text) || strings.TrimSpace(got.HTML) != e.HTML {
		t.Errorf("bodies:\ntext %q\nhtml %q", got.Text, got.HTML)
	}
	if h := headers["Auto-Submitted"]; len(h) != 1 || h[0] != "auto-generated" {
		t.Errorf("Auto-Submitted = %v", h)
	}
	if got.MessageID == "" || len(headers["Message-Id"])+len(headers["Message-ID"]) != 1 || len(headers["Date"]) != 1 {
		t.Errorf("Message-ID %q, headers %v", got.MessageID, headers)
	}
}

// awaitMailpit polls Mailpit's search until exactly one message to `to` arrived and
// returns its ID.
func awaitMailpit(t *testing.T, api, to string) string {
	t.Helper()
	var id string
	testenv.Eventually(t, 10*time.Second, func() bool {
		var res struct {
			Messages []struct{ ID string }
		}
		getJSON(t, api+"/api/v1/search?query="+url.QueryEscape(`to:"`+to+`"`), &res)
		if len(res.Messages) > 1 {
			t.Fatalf("%d messages to %s; want 1", len(res.Messages), to)
		}
		if len(res.Messages) == 1 {
			id = res.Messages[0].ID
		}
		return id != ""
	}, "a message to "+to+" in Mailpit")
	return id
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// TestSendClassifiesReplies talks to a minimal SMTP peer on 127.0.0.1 that answers
// RCPT TO or the end of DATA with a chosen reply, to check which failures are
// permanent (5xx) and which are retried (4xx, no server).
func TestSendClassifiesReplies(t *testing.T) {
	tests := []struct {
		name          string
		rcpt, dataEnd string
		wantErr       bool
		wantPermanent bool
	}{
		{"Accepted", "250 OK", "250 queued", false, false},
		{"MailboxUnavailable550", "550 5.1.1 no such user", "", true, true},
		{"TryLater451", "451 4.3.0 try again later", "", true, false},
		{"Greylisted421", "421 4.7.0 closing", "", true, false},
		{"RejectedAtData554", "250 OK", "554 5.7.1 rejected as spam", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := smtpPeer(t, tc.rcpt, tc.dataEnd)
			err := mailerFor(t, addr).Send(context.Background(), chat.Email{To: "someone@example.com", Subject: "s", Text: "t", HTML: "<p>t</p>"})
			if (err != nil) != tc.wantErr || chat.IsCode(err, chat.EPermanent) != tc.wantPermanent {
				t.Fatalf("Send = %v; want error %v, permanent %v", err, tc.wantErr, tc.wantPermanent)
			}
		})
	}
	t.Run("NoServer", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		err = mailerFor(t, addr).Send(context.Background(), chat.Email{To: "someone@example.com", Subject: "s", Text: "t"})
		if err == nil || chat.IsCode(err, chat.EPermanent) {
			t.Fatalf("Send with no server = %v; want a temporary error", err)
		}
	})
}

// smtpPeer serves one SMTP conversation at a time on 127.0.0.1, answering RCPT TO with
// rcpt and the end of DATA with dataEnd; everything else is accepted.
func smtpPeer(t *testing.T, rcpt, dataEnd string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveSMTP(c, rcpt, dataEnd)
		}
	}()
	return l.Addr().String()
}

func serveSMTP(c net.Conn, rcpt, dataEnd string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	reply := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	reply("220 peer.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			reply("250-peer.test")
			reply("250 8BITMIME")
		case "RCPT":
			reply(rcpt)
			if strings.HasPrefix(rcpt, "421") {
				return
			}
		case "DATA":
			reply("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
			}
			reply(dataEnd)
		case "QUIT":
			reply("221 bye")
			return
		default: // HELO, MAIL, RSET, NOOP
			reply("250 OK")
		}
	}
}

// TestStartTLSIsRequired checks that tls=starttls never falls back to plain text: the
// peer offers no STARTTLS, so nothing is sent and the failure is temporary.
func TestStartTLSIsRequired(t *testing.T) {
	addr := smtpPeer(t, "250 OK", "250 queued")
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	m, err := New(Options{Host: host, Port: p, TLS: TLSStartTLS, Timeout: 5 * time.Second, From: "noreply@parley.example"})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(context.Background(), chat.Email{To: "someone@example.com", Subject: "s", Text: "t"})
	if err == nil || chat.IsCode(err, chat.EPermanent) {
		t.Fatalf("Send without STARTTLS on offer = %v; want a temporary error", err)
	}
}

// TestSendRefusesBadRecipient: an address that cannot be a recipient (or would smuggle
// a header) is refused for good before any connection is made.
func TestSendRefusesBadRecipient(t *testing.T) {
	m := mailerFor(t, "127.0.0.1:1") // nothing listens there: no connection may be tried
	for name, to := range map[string]string{
		"NotAnAddress": "not an address",
		"HeaderInTo":   "a@example.com\r\nBcc: evil@example.com",
		"Empty":        "",
	} {
		t.Run(name, func(t *testing.T) {
			err := m.Send(context.Background(), chat.Email{To: to, Subject: "s", Text: "t"})
			if !chat.IsCode(err, chat.EPermanent) {
				t.Fatalf("Send to %q = %v; want %s", to, err, chat.EPermanent)
			}
		})
	}
}
