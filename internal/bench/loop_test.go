package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeParley is a scripted server speaking Parley's contract (docs/protocol.md) for
// one-room chats, so the closed loop can be run against the faults the real server
// does not make on demand. fault is asked about every send frame before it is
// handled, under the room's lock; it says what to do instead of the normal handling.
type fakeParley struct {
	t      *testing.T
	origin string
	mu     sync.Mutex
	rooms  map[string]*fakeRoom
	fault  func(id string, first bool) fakeFault
}

type fakeFault int

const (
	faultNone       fakeFault = iota
	faultRateLimit            // answer rate_limited, store nothing
	faultLose                 // store nothing, answer nothing: the client resends after a timeout
	faultDropSender           // store, send to the others, close the sender's connection
	faultDuplicate            // store, send the message frame twice to everyone
	faultSkipSeq              // store under a seq one higher than the next, leaving a gap
	faultRefuse               // answer an error frame other than rate_limited
)

type fakeRoom struct {
	seq   int64
	msgs  [][]byte // message frames by seq-1
	ids   map[string]int64
	seen  map[string]bool // ids a fault was already asked about
	conns map[net.Conn]string
}

func newFakeParley(t *testing.T, fault func(id string, first bool) fakeFault) string {
	f := &fakeParley{t: t, rooms: make(map[string]*fakeRoom), fault: fault}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /join", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "s", Value: r.FormValue("email")})
		http.Redirect(w, r, "/rooms/"+r.FormValue("room"), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /rooms/{room}/ws", f.serveWS)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.origin = srv.URL
	return srv.URL
}

func (f *fakeParley) serveWS(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie("s")
	if err != nil {
		http.Error(w, "no cookie", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Origin") != f.origin {
		http.Error(w, "bad origin", http.StatusForbidden)
		return
	}
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	email := ck.Value
	f.mu.Lock()
	rm := f.rooms[r.PathValue("room")]
	if rm == nil {
		rm = &fakeRoom{ids: map[string]int64{}, seen: map[string]bool{}, conns: map[net.Conn]string{}}
		f.rooms[r.PathValue("room")] = rm
	}
	_ = wsutil.WriteServerText(conn, []byte(`{"type":"welcome","session":"s1","you":"`+email+`","last_seq":`+strconv.FormatInt(rm.seq, 10)+`}`))
	for _, m := range rm.msgs[min(after, int64(len(rm.msgs))):] {
		if m != nil { // nil: a seq skipped by faultSkipSeq
			_ = wsutil.WriteServerText(conn, m)
		}
	}
	rm.conns[conn] = email
	f.mu.Unlock()
	defer func() { f.mu.Lock(); delete(rm.conns, conn); f.mu.Unlock() }()
	rd := struct {
		io.Reader
		io.Writer
	}{rw.Reader, conn}
	for {
		data, err := wsutil.ReadClientText(rd)
		if err != nil {
			return
		}
		var in struct{ Type, ID, Text string }
		if err := json.Unmarshal(data, &in); err != nil || in.Type != "send" {
			f.t.Errorf("bad frame %q: %v", data, err)
			return
		}
		if !f.send(rm, conn, email, in.ID) {
			return
		}
	}
}

// send handles one send frame; false closes the sender's connection.
func (f *fakeParley) send(rm *fakeRoom, conn net.Conn, email, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq, ok := rm.ids[id]; ok { // a resend: same seq, nothing stored or sent again
		_ = wsutil.WriteServerText(conn, []byte(`{"type":"ack","id":"`+id+`","seq":`+strconv.FormatInt(seq, 10)+`}`))
		return true
	}
	fault := f.fault(id, !rm.seen[id])
	rm.seen[id] = true
	switch fault {
	case faultRateLimit:
		_ = wsutil.WriteServerText(conn, []byte(`{"type":"error","code":"rate_limited","message":"slow down"}`))
		return true
	case faultRefuse:
		_ = wsutil.WriteServerText(conn, []byte(`{"type":"error","code":"too_long","message":"no"}`))
		return true
	case faultLose:
		return true
	case faultSkipSeq:
		rm.seq++
		rm.msgs = append(rm.msgs, nil)
	}
	rm.seq++
	seq := strconv.FormatInt(rm.seq, 10)
	msg := []byte(`{"type":"message","seq":` + seq + `,"id":"` + id + `","from":"` + email +
		`","to":"x","text":"t","kind":"chat","at":"2026-11-27T12:00:00Z"}`)
	rm.ids[id] = rm.seq
	rm.msgs = append(rm.msgs, msg)
	_ = wsutil.WriteServerText(conn, []byte(`{"type":"ack","id":"`+id+`","seq":`+seq+`}`))
	for c := range rm.conns {
		if fault == faultDropSender && c == conn {
			continue
		}
		_ = wsutil.WriteServerText(c, msg)
		if fault == faultDuplicate {
			_ = wsutil.WriteServerText(c, msg)
		}
	}
	return fault != faultDropSender
}

// fakeResendAfter is the resend timeout of the fake chats: long enough that on a busy
// machine only the message the fake server loses waits for it.
const fakeResendAfter = 400 * time.Millisecond

// runFakeChat runs a short closed loop of one room against a fake server.
func runFakeChat(t *testing.T, fault func(id string, first bool) fakeFault) *Result {
	t.Helper()
	o := DefaultOptions()
	o.URL, o.Rooms, o.Warmup, o.Duration, o.Quiet = newFakeParley(t, fault), 1, 0, time.Second, true
	o.ResendAfter, o.Drain = fakeResendAfter, 2*time.Second
	var errs bytes.Buffer
	res, err := runChat(context.Background(), o, "t", &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs.String())
	}
	return res
}

// TestLoopFaults runs the closed loop against a server that rate-limits one message,
// loses one (no answer), and drops a sender's connection right after storing its
// message: the bench resends, reconnects with ?after= and still counts every message
// exactly once at both ends.
func TestLoopFaults(t *testing.T) {
	res := runFakeChat(t, func(id string, first bool) fakeFault {
		if !first {
			return faultNone
		}
		switch {
		case strings.HasSuffix(id, "-a-3"):
			return faultRateLimit
		case strings.HasSuffix(id, "-a-5"):
			return faultLose
		case strings.HasSuffix(id, "-b-4"):
			return faultDropSender
		case strings.HasSuffix(id, "-b-6"):
			return faultRefuse
		}
		return faultNone
	})
	if err := res.integrityError(); err != nil {
		t.Errorf("integrity: %v (%+v)", err, res.tally)
	}
	for code, want := range map[string]int64{"rate_limited": 1, "timeout": 1, "disconnected": 1, "too_long": 1} {
		got := res.Errors[code]
		// A machine busy enough to hold another message past the timeout resends it too,
		// harmlessly (same id): only the lost one must have timed out.
		if got != want && (code != "timeout" || got < want) {
			t.Errorf("errors[%s] = %d, want %d (all: %v)", code, got, want, res.Errors)
		}
	}
	if res.Reconnects != 1 {
		t.Errorf("reconnects %d, want 1", res.Reconnects)
	}
	// Messages went round and each one's latency was recorded (but the refused one, and
	// up to two in flight when the window closed). Deliveries at the peer may lag the
	// window's sends by what it had not read yet; the ledger above checks each arrived.
	if res.Sends < 20 || res.Deliveries < 2*res.Sends*9/10 || res.Latency.Count < res.Sends-3 {
		t.Errorf("sends %d, deliveries %d, latencies %d", res.Sends, res.Deliveries, res.Latency.Count)
	}
	// The lost message waited for the resend: its latency is at least ResendAfter.
	if want := float64(fakeResendAfter / time.Millisecond); res.Latency.Max < want {
		t.Errorf("max latency %.1f ms, want >= %.0f (the resent message)", res.Latency.Max, want)
	}
}

// TestLoopDetectsBadServer: a server that sends a message twice, or skips a seq, fails
// the run's integrity check.
func TestLoopDetectsBadServer(t *testing.T) {
	tests := []struct {
		name  string
		fault fakeFault
		check func(tally) bool
	}{
		{"Duplicate", faultDuplicate, func(t tally) bool { return t.Duplicated == 2 && t.SeqDuplicates == 2 }},
		{"SeqGap", faultSkipSeq, func(t tally) bool { return t.SeqGaps == 2 && t.Lost == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runFakeChat(t, func(id string, first bool) fakeFault {
				if first && strings.HasSuffix(id, "-a-2") {
					return tt.fault
				}
				return faultNone
			})
			if err := res.integrityError(); !errors.Is(err, ErrIntegrity) || !tt.check(res.tally) {
				t.Errorf("integrity %v, tally %+v", err, res.tally)
			}
		})
	}
}
