package dynamostore

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"parley/internal/chat"
)

// meter counts the HTTP requests a Store sends to DynamoDB, by operation (retries
// included: each is billed), and the capacity units DynamoDB reports for them.
type meter struct {
	mu       sync.Mutex
	requests map[string]int
	units    map[string]float64
}

func newMeter() *meter {
	return &meter{requests: map[string]int{}, units: map[string]float64{}}
}

// tune installs the meter in a client's options (see openOn).
func (mt *meter) tune(o *dynamodb.Options) {
	o.HTTPClient = countingClient{next: o.HTTPClient, mt: mt}
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("meterCapacity", mt.capacity), middleware.After)
	})
}

// capacity asks DynamoDB to report the capacity each request consumed and adds it up.
// A conditional write that fails reports nothing here, though DynamoDB bills it as a
// write; the request count has it.
func (mt *meter) capacity(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	total := types.ReturnConsumedCapacityTotal
	switch p := in.Parameters.(type) {
	case *dynamodb.PutItemInput:
		p.ReturnConsumedCapacity = total
	case *dynamodb.GetItemInput:
		p.ReturnConsumedCapacity = total
	case *dynamodb.QueryInput:
		p.ReturnConsumedCapacity = total
	}
	out, md, err := next.HandleInitialize(ctx, in)
	var cc *types.ConsumedCapacity
	kind := "read"
	switch r := out.Result.(type) {
	case *dynamodb.PutItemOutput:
		cc, kind = r.ConsumedCapacity, "write"
	case *dynamodb.GetItemOutput:
		cc = r.ConsumedCapacity
	case *dynamodb.QueryOutput:
		cc = r.ConsumedCapacity
	}
	if cc != nil && cc.CapacityUnits != nil {
		mt.mu.Lock()
		mt.units[kind] += *cc.CapacityUnits
		mt.mu.Unlock()
	}
	return out, md, err
}

// take returns the counts so far and starts again from zero.
func (mt *meter) take() (map[string]int, map[string]float64) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	r, u := mt.requests, mt.units
	mt.requests, mt.units = map[string]int{}, map[string]float64{}
	return r, u
}

// countingClient counts requests by the operation in their X-Amz-Target header.
type countingClient struct {
	next dynamodb.HTTPClient
	mt   *meter
}

func operation(req *http.Request) string {
	return strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
}

func (c countingClient) Do(req *http.Request) (*http.Response, error) {
	c.mt.mu.Lock()
	c.mt.requests[operation(req)]++
	c.mt.mu.Unlock()
	return c.next.Do(req)
}

// TestRequestsPerMessage counts what an Append costs in DynamoDB requests: one
// conditional PutItem per new message in the common case (one replica appends to a
// session it has seen), plus one Query per session and replica when cold. Run with -v
// to see the table of requests and capacity units (docs/DEPLOY.md quotes it).
func TestRequestsPerMessage(t *testing.T) {
	base := openTable(t)
	ep := dynamoEndpoint(t)
	mA, mB := newMeter(), newMeter()
	a := openOn(t, ep, base.table, mA.tune)
	b := openOn(t, ep, base.table, mB.tune)
	type row struct {
		name     string
		messages int
		req      map[string]int
		units    map[string]float64
	}
	var rows []row
	measure := func(name string, messages int, run func()) row {
		mA.take()
		mB.take()
		run()
		rA, uA := mA.take()
		rB, uB := mB.take()
		for k, v := range rB {
			rA[k] += v
		}
		for k, v := range uB {
			uA[k] += v
		}
		r := row{name, messages, rA, uA}
		rows = append(rows, r)
		return r
	}
	expect := func(r row, want map[string]int) {
		t.Helper()
		for _, op := range []string{"PutItem", "Query", "GetItem", "UpdateItem", "BatchWriteItem"} {
			if r.req[op] != want[op] {
				t.Errorf("%s: %d %s requests for %d messages; want %d (all: %v)", r.name, r.req[op], op, r.messages, want[op], r.req)
			}
		}
	}

	const n = 100
	sess := chat.NewSessionID()
	text := strings.Repeat("a chat message of ordinary length ", 3)
	r := measure("new messages, one replica", n, func() {
		for i := range n {
			mustAppend(t, a, msg(sess, fmt.Sprintf("id-%d", i), text))
		}
	})
	expect(r, map[string]int{"PutItem": n, "Query": 1}) // the Query: the session is new to a

	r = measure("resends of stored ids", 10, func() {
		for i := range 10 {
			if _, dup := mustAppend(t, a, msg(sess, fmt.Sprintf("id-%d", i*7), "again")); !dup {
				t.Errorf("resend of id-%d stored as new", i*7)
			}
		}
	})
	expect(r, map[string]int{"GetItem": 10})

	r = measure("first message on a cold replica", 1, func() {
		if got, dup := mustAppend(t, b, msg(sess, "cold", text)); dup || got.Seq != n+1 {
			t.Errorf("Append on a cold replica = seq %d dup %v; want %d, new", got.Seq, dup, n+1)
		}
	})
	expect(r, map[string]int{"PutItem": 1, "Query": 1})

	// Two people on two replicas taking turns: each replica learns of the other's
	// message by reading the tail before it writes (a shared session), not by losing a
	// write; only the first turn of each replica loses one.
	duo := chat.NewSessionID()
	mustAppend(t, a, msg(duo, "hello-a", text))
	mustAppend(t, b, msg(duo, "hello-b", text))
	const turns = 50
	r = measure("two replicas taking turns", 2*turns, func() {
		for i := range turns {
			mustAppend(t, a, msg(duo, fmt.Sprintf("a-%d", i), text))
			mustAppend(t, b, msg(duo, fmt.Sprintf("b-%d", i), text))
		}
	})
	if r.req["PutItem"] > 2*turns+2 || r.req["Query"] > 2*turns+2 || r.req["GetItem"] != 0 {
		t.Errorf("%s: %v for %d messages; want at most one PutItem and one Query each, plus one lost write per replica", r.name, r.req, 2*turns)
	}
	checkGapless(t, a, duo, 2+2*turns)

	// One person on each replica, talking in bursts of five.
	burst := chat.NewSessionID()
	r = measure("two replicas, bursts of 5", 100, func() {
		for i := range 100 {
			s := a
			if i/5%2 == 1 {
				s = b
			}
			mustAppend(t, s, msg(burst, fmt.Sprintf("m-%d", i), text))
		}
	})
	checkGapless(t, a, burst, 100)
	if r.req["PutItem"] > 100+20 {
		t.Errorf("%s: %d PutItems for 100 messages; want at most one lost write per burst", r.name, r.req["PutItem"])
	}

	t.Logf("%-34s %8s %8s %8s %8s %11s %11s", "case", "messages", "PutItem", "Query", "GetItem", "write units", "read units")
	for _, r := range rows {
		t.Logf("%-34s %8d %8.2f %8.2f %8.2f %11.2f %11.2f", r.name, r.messages,
			per(r.req["PutItem"], r.messages), per(r.req["Query"], r.messages), per(r.req["GetItem"], r.messages),
			r.units["write"]/float64(r.messages), r.units["read"]/float64(r.messages))
	}
	t.Logf("(per message; read units as dynalite counts them: it bills an empty Query nothing, DynamoDB at least 1 for a consistent read; lost conditional writes cost a write unit on DynamoDB and show only in PutItem)")
}

func per(n, messages int) float64 { return float64(n) / float64(messages) }

// checkGapless fails t unless the session holds seqs 1..n, each client id once.
func checkGapless(t *testing.T, s *Store, sess string, n int) {
	t.Helper()
	stored, err := s.Messages(context.Background(), sess, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != n {
		t.Fatalf("session holds %d messages; want %d", len(stored), n)
	}
	seen := map[string]bool{}
	for i, m := range stored {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: gap or seq twice", i, m.Seq)
		}
		if m.ClientID != "" && seen[m.ClientID] {
			t.Fatalf("client id %s stored twice", m.ClientID)
		}
		seen[m.ClientID] = true
	}
}

// TestCrossReplicaSameClientID races two replicas (two Stores on one table), two
// Appends each, with the same client id, round after round: every caller must get the
// one stored message's seq, exactly one of them as new, and the session must stay
// gapless. Every tenth round the second replica restarts (a fresh Store: cold).
func TestCrossReplicaSameClientID(t *testing.T) {
	a := openTable(t)
	ep := dynamoEndpoint(t)
	b := openOn(t, ep, a.table)
	sess := chat.NewSessionID()
	const rounds, callers = 150, 4
	for round := range rounds {
		if round%10 == 9 {
			b = openOn(t, ep, a.table)
		}
		id := fmt.Sprintf("same-%d", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   [callers]chat.Message
			dup   [callers]bool
			errs  [callers]error
		)
		for k := range callers {
			s := []*Store{a, b}[k%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[k], dup[k], errs[k] = s.Append(context.Background(), msg(sess, id, fmt.Sprintf("caller %d", k)))
			}()
		}
		close(start)
		wg.Wait()
		fresh := 0
		for k := range callers {
			if errs[k] != nil {
				t.Fatalf("round %d caller %d: %v", round, k, errs[k])
			}
			if got[k].Seq != int64(round+1) || got[k].Text != got[0].Text {
				t.Fatalf("round %d caller %d got seq %d %q; want seq %d %q (the one stored message)", round, k, got[k].Seq, got[k].Text, round+1, got[0].Text)
			}
			if !dup[k] {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("round %d: %d callers stored the message; want exactly 1", round, fresh)
		}
	}
	checkGapless(t, a, sess, rounds)
}

// TestSDKRetryOfLandedWrite: a PutItem that landed but whose answer was lost (here: the
// answer is replaced by a 500, so the SDK retries) must count as stored, once, with
// the seq it landed at, with or without a client id.
func TestSDKRetryOfLandedWrite(t *testing.T) {
	for _, client := range []string{"c1", ""} {
		t.Run(fmt.Sprintf("ClientID=%q", client), func(t *testing.T) {
			base := openTable(t)
			mt := newMeter()
			var lose atomic.Int32
			s := openOn(t, dynamoEndpoint(t), base.table, func(o *dynamodb.Options) {
				o.HTTPClient = loseAnswer{next: o.HTTPClient, op: "PutItem", n: &lose, status: http.StatusInternalServerError,
					body: `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"answer lost"}`}
			}, mt.tune)
			sess := chat.NewSessionID()
			mustAppend(t, s, msg(sess, "before", "x"))
			lose.Store(1)
			got, dup := mustAppend(t, s, msg(sess, client, "retried"))
			if dup || got.Seq != 2 {
				t.Fatalf("Append with a retried write = seq %d dup %v; want 2, new", got.Seq, dup)
			}
			if lose.Load() != 0 {
				t.Fatal("no answer was lost: the test did not test anything")
			}
			after, _ := mustAppend(t, s, msg(sess, "after", "x"))
			if after.Seq != 3 {
				t.Fatalf("next Append = seq %d; want 3", after.Seq)
			}
			checkGapless(t, s, sess, 3)
		})
	}
}

// TestFailedAppendThenResend: an Append that fails after its write landed (the error
// is not retried) leaves a stored message this replica does not know of; the client's
// resend must get that message, not store a second one.
func TestFailedAppendThenResend(t *testing.T) {
	base := openTable(t)
	var lose atomic.Int32
	s := openOn(t, dynamoEndpoint(t), base.table, func(o *dynamodb.Options) {
		o.HTTPClient = loseAnswer{next: o.HTTPClient, op: "PutItem", n: &lose, status: http.StatusBadRequest,
			body: `{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"answer lost"}`}
	})
	sess := chat.NewSessionID()
	mustAppend(t, s, msg(sess, "before", "x"))
	lose.Store(1)
	if _, _, err := s.Append(context.Background(), msg(sess, "c1", "first try")); err == nil {
		t.Fatal("Append whose answer was lost succeeded; want an error")
	}
	got, dup := mustAppend(t, s, msg(sess, "c1", "resend"))
	if !dup || got.Seq != 2 || got.Text != "first try" {
		t.Fatalf("resend = seq %d dup %v %q; want the stored message (seq 2, dup)", got.Seq, dup, got.Text)
	}
	next, _ := mustAppend(t, s, msg(sess, "c2", "x"))
	if next.Seq != 3 {
		t.Fatalf("next Append = seq %d; want 3", next.Seq)
	}
	checkGapless(t, s, sess, 3)
}

// loseAnswer sends requests on, but while *n > 0 replaces the answer to an op request
// with status and body (after the request took effect), decrementing *n.
type loseAnswer struct {
	next   dynamodb.HTTPClient
	op     string
	n      *atomic.Int32
	status int
	body   string
}

func (l loseAnswer) Do(req *http.Request) (*http.Response, error) {
	resp, err := l.next.Do(req)
	if err != nil || operation(req) != l.op || !l.take() {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return &http.Response{
		StatusCode: l.status, Status: http.StatusText(l.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"},
			"X-Amz-Crc32": {strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(l.body))), 10)}},
		Body:    io.NopCloser(bytes.NewReader([]byte(l.body))),
		Request: req, ContentLength: int64(len(l.body)),
	}, nil
}

func (l loseAnswer) take() bool {
	for {
		n := l.n.Load()
		if n <= 0 {
			return false
		}
		if l.n.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// TestResendAfterRestart: a replica that never saw a session (restarted, or another
// replica stored it) recognises a resend from the window it reads, with one Query.
func TestResendAfterRestart(t *testing.T) {
	a := openTable(t)
	sess := chat.NewSessionID()
	for i := range 30 {
		mustAppend(t, a, msg(sess, fmt.Sprintf("id-%d", i), "x"))
	}
	mt := newMeter()
	b := openOn(t, dynamoEndpoint(t), a.table, mt.tune)
	got, dup := mustAppend(t, b, msg(sess, "id-0", "resent"))
	if !dup || got.Seq != 1 || got.Text != "x" {
		t.Fatalf("resend on a fresh replica = seq %d dup %v %q; want seq 1, dup", got.Seq, dup, got.Text)
	}
	if req, _ := mt.take(); req["Query"] != 1 || req["GetItem"] != 1 || req["PutItem"] != 0 {
		t.Fatalf("resend on a fresh replica cost %v; want one Query and one GetItem", req)
	}

	// A smaller window: the newest 10 messages are still recognised after a restart.
	c := openOn(t, dynamoEndpoint(t), a.table)
	c.seqs.window = 10
	if got, dup := mustAppend(t, c, msg(sess, "id-20", "resent")); !dup || got.Seq != 21 {
		t.Fatalf("resend within the window = seq %d dup %v; want seq 21, dup", got.Seq, dup)
	}
	checkGapless(t, a, sess, 30)
}

// TestHashCollision plants a wrong entry for a client id (what two ids with one hash
// would leave) and checks Append settles it against the table, both ways.
func TestHashCollision(t *testing.T) {
	s := openTable(t)
	sess := chat.NewSessionID()
	mustAppend(t, s, msg(sess, "a", "x"))
	mustAppend(t, s, msg(sess, "b", "x"))
	plant := func(client string, seq int64) {
		st := s.seqs.acquire(sess)
		st.ids[s.seqs.hash(client)] = seq
		s.seqs.release(st)
	}
	plant("new", 1) // "new" looks like a resend of message 1 ("a")
	if got, dup := mustAppend(t, s, msg(sess, "new", "x")); dup || got.Seq != 3 {
		t.Fatalf("Append of a new id whose hash hits = seq %d dup %v; want 3, new", got.Seq, dup)
	}
	plant("new", 2) // and now its entry is lost to "b"
	if got, dup := mustAppend(t, s, msg(sess, "new", "x")); !dup || got.Seq != 3 {
		t.Fatalf("resend whose entry was overwritten = seq %d dup %v; want 3, dup", got.Seq, dup)
	}
	checkGapless(t, s, sess, 3)
}

// TestLegacyGuards: a table written by the earlier two-write design holds dedupe
// guards at negative seqs next to the messages. Reads ignore them, Appends continue
// the session and recognise its client ids, and DeleteSession removes them too.
func TestLegacyGuards(t *testing.T) {
	s := openTable(t)
	ctx := context.Background()
	sess := chat.NewSessionID()
	for i, client := range []string{"old-1", "old-2"} {
		m := msg(sess, client, "from before")
		m.Seq, m.CreatedAt = int64(i+1), chat.Now()
		if won, err := s.putMessage(ctx, m, "w"+client); err != nil || !won {
			t.Fatalf("putMessage = %v, %v", won, err)
		}
		guard := key(sess, -1-int64(i)*1000003)
		guard["clientId"] = &types.AttributeValueMemberS{Value: client}
		guard["msgSeq"] = numberValue(int64(i + 1))
		if _, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: guard}); err != nil {
			t.Fatal(err)
		}
	}
	r := openOn(t, dynamoEndpoint(t), s.table) // a new version's replica
	if last, err := r.LastSeq(ctx, sess); err != nil || last != 2 {
		t.Fatalf("LastSeq = %d, %v; want 2", last, err)
	}
	if got, dup := mustAppend(t, r, msg(sess, "old-2", "resent")); !dup || got.Seq != 2 {
		t.Fatalf("resend of an old id = seq %d dup %v; want 2, dup", got.Seq, dup)
	}
	if got, dup := mustAppend(t, r, msg(sess, "new", "x")); dup || got.Seq != 3 {
		t.Fatalf("Append = seq %d dup %v; want 3, new", got.Seq, dup)
	}
	checkGapless(t, r, sess, 3)
	if n, err := r.DeleteSession(ctx, sess); err != nil || n != 3 {
		t.Fatalf("DeleteSession = %d, %v; want 3 messages", n, err)
	}
	out, err := s.client.Query(ctx, &dynamodb.QueryInput{
		TableName: &s.table, KeyConditionExpression: aws.String("#s = :s"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSession},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: sess}},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil || len(out.Items) != 0 {
		t.Fatalf("partition after DeleteSession: %d items, %v; want none (guards too)", len(out.Items), err)
	}
}

// TestWindowTrim: what a replica remembers of one session stays within the window
// plus a quarter, and always holds the newest window.
func TestWindowTrim(t *testing.T) {
	c := newSeqCache(8)
	st := c.acquire("s")
	defer c.release(st)
	for seq := int64(1); seq <= 100; seq++ {
		id := fmt.Sprint(seq)
		st.learn(id, c.hash(id), seq)
		if len(st.ids) > 10 {
			t.Fatalf("after seq %d: %d ids remembered; want at most 10", seq, len(st.ids))
		}
	}
	for seq := int64(93); seq <= 100; seq++ {
		id := fmt.Sprint(seq)
		if st.ids[c.hash(id)] != seq {
			t.Fatalf("seq %d (within the window) forgotten", seq)
		}
	}
}

// TestCacheBounds: past its bounds a replica forgets idle sessions, and a forgotten
// session still dedupes (it is read again).
func TestCacheBounds(t *testing.T) {
	s := openTable(t)
	s.seqs.maxSess, s.seqs.maxIDs = 3, 8
	var sessions []string
	for i := range 5 {
		sess := chat.NewSessionID()
		sessions = append(sessions, sess)
		for j := range 3 {
			mustAppend(t, s, msg(sess, fmt.Sprintf("id-%d", j), "x"))
		}
		s.seqs.mu.Lock()
		n, ids := len(s.seqs.m), s.seqs.ids
		s.seqs.mu.Unlock()
		if n > 3 || ids > 8 {
			t.Fatalf("after %d sessions: %d sessions, %d ids remembered; want at most 3 and 8", i+1, n, ids)
		}
	}
	if got, dup := mustAppend(t, s, msg(sessions[0], "id-1", "resent")); !dup || got.Seq != 2 {
		t.Fatalf("resend in a forgotten session = seq %d dup %v; want 2, dup", got.Seq, dup)
	}
}

// TestResendAfterPurgeElsewhere: a replica remembers a client id of a session that
// another process has purged since; the id's message is gone, so the replica reads
// the session again and stores the message as new, at seq 1.
func TestResendAfterPurgeElsewhere(t *testing.T) {
	a := openTable(t)
	worker := openOn(t, dynamoEndpoint(t), a.table)
	sess := chat.NewSessionID()
	mustAppend(t, a, msg(sess, "x", "before the purge"))
	if n, err := worker.DeleteSession(context.Background(), sess); err != nil || n != 1 {
		t.Fatalf("DeleteSession = %d, %v; want 1", n, err)
	}
	got, dup := mustAppend(t, a, msg(sess, "x", "after the purge"))
	if dup || got.Seq != 1 || got.Text != "after the purge" {
		t.Fatalf("Append after a purge elsewhere = seq %d dup %v %q; want seq 1, new", got.Seq, dup, got.Text)
	}
	checkGapless(t, a, sess, 1)
}
