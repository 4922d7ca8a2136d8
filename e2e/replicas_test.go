package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/coder/websocket/wsjson"
	"github.com/redis/go-redis/v9"

	"parley/internal/testenv"
	"parley/internal/wire"
)

// The tests of this file run Parley scaled out, as docs/DEPLOY.md describes: several
// `parley serve` replicas and `parley worker`s, each its own process with its own data
// folder, sharing MariaDB, DynamoDB (dynalite), S3 (MinIO), SMTP (Mailpit) and Redis.

// cluster is one scaled-out deployment under test: the production backends, a Redis
// database of its own and the variables every process of the deployment shares.
type cluster struct {
	t        *testing.T
	p        *production
	env      []string
	db       int    // the Redis database number
	messages string // where messages are kept: "dynamodb" or "mariadb"
}

// newCluster prepares the backends (migrated) of a deployment whose messages are kept
// in messages ("dynamodb" or "mariadb"); start processes with replica and worker.
func newCluster(t *testing.T, messages string, extra ...string) *cluster {
	t.Helper()
	p := newProduction(t)
	redisURL, db := claimRedisDB(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := &cluster{t: t, p: p, db: db, messages: messages}
	for _, kv := range p.env {
		if messages == "mariadb" && strings.HasPrefix(kv, "PARLEY_DYNAMODB_") {
			continue
		}
		c.env = append(c.env, kv)
	}
	if messages == "mariadb" {
		c.env = append(c.env, "PARLEY_MYSQL_MESSAGES=true")
	}
	c.env = append(c.env,
		"PARLEY_REDIS_URL="+redisURL,
		// Every replica must accept the cookie another replica signed.
		"PARLEY_COOKIE_KEY="+hex.EncodeToString(key),
		// The tests pipeline hundreds of messages per connection.
		"PARLEY_RATE=100000", "PARLEY_RATE_BURST=100000",
	)
	c.env = append(c.env, extra...)
	p.run(t, t.TempDir(), "migrate", "--create-table", "--create-bucket")
	return c
}

// replica starts one `parley serve` of the deployment, with a data folder of its own.
func (c *cluster) replica(extra ...string) *server {
	c.t.Helper()
	return startServer(c.t, c.t.TempDir(), append(append([]string{}, c.env...), extra...)...)
}

// worker starts one `parley worker` and waits until its task server has started.
func (c *cluster) worker(extra ...string) *server {
	c.t.Helper()
	w := startProcess(c.t, "worker", freeAddr(c.t), c.t.TempDir(), append(append([]string{}, c.env...), extra...)...)
	waitLog(c.t, w, "worker started", 30*time.Second)
	return w
}

// waitLog waits until a process has logged a line containing s.
func waitLog(t *testing.T, s *server, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.logs.String(), text) {
		select {
		case <-s.done:
			t.Fatalf("parley exited (%v) before logging %q:\n%s", s.err, text, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("parley did not log %q within %s:\n%s", text, timeout, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claimKey marks a Redis database as taken by one test: the asynq queue ("parley")
// and the bus prefix ("parley:") are fixed, so a test whose workers shared a database
// with another run's would take that run's tasks, and a day's purge task id (kept
// 48 h) would stop the scheduler of a later run from purging.
const claimKey = "parley-e2e:claim"

// claimRedisDB finds a Redis database among 2..15 (0 is stack.env's, 1 the package
// tests') that no other test holds, empties it, and returns its URL; at the end of
// the test it empties it again and frees it.
func claimRedisDB(t *testing.T) (string, int) {
	t.Helper()
	base := testenv.RedisURL(t)
	opts, err := redis.ParseURL(base)
	if err != nil {
		t.Fatal(err)
	}
	token := testenv.UniqueName(t, t.Name())
	ctx := context.Background()
	for db := 2; db <= 15; db++ {
		o := *opts
		o.DB = db
		rdb := redis.NewClient(&o)
		ok, err := rdb.SetNX(ctx, claimKey, token, 10*time.Minute).Result()
		if err != nil {
			rdb.Close()
			t.Fatalf("claiming Redis database %d: %v", db, err)
		}
		if !ok {
			rdb.Close()
			continue
		}
		emptyRedisDB(t, rdb)
		t.Cleanup(func() {
			emptyRedisDB(t, rdb)
			rdb.Del(ctx, claimKey)
			rdb.Close()
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + strconv.Itoa(db)
		return u.String(), db
	}
	t.Fatalf("Redis databases 2..15 are all claimed by other e2e tests (key %s)", claimKey)
	return "", 0
}

// emptyRedisDB deletes every key of the database but the claim.
func emptyRedisDB(t *testing.T, rdb *redis.Client) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		if k := iter.Val(); k != claimKey {
			keys = append(keys, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scanning Redis: %v", err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Errorf("emptying Redis: %v", err)
			return
		}
		keys = keys[n:]
	}
}

// on returns the same person (same cookie) reaching the site through another replica,
// as a load balancer without sticky sessions would send them.
func (p *person) on(s *server) *person {
	q := *p
	q.base = s.URL
	return &q
}

// tally is what a connection received: message frames in arrival order, acks by
// client id, and the last presence state of each email.
type tally struct {
	msgs     []frame
	acks     map[string]int64
	presence map[string]bool
	errors   []frame
	typing   map[string]int         // typing frames by sender
	receipts map[string]wire.Cursor // the latest receipt by reader
}

func newTally() *tally {
	return &tally{acks: map[string]int64{}, presence: map[string]bool{}, typing: map[string]int{},
		receipts: map[string]wire.Cursor{}}
}

func (tl *tally) add(f frame) {
	switch f.Type {
	case "message":
		tl.msgs = append(tl.msgs, f)
	case "ack":
		tl.acks[f.ID] = f.Seq
	case "presence":
		tl.presence[f.Email] = f.Online
	case "error":
		tl.errors = append(tl.errors, f)
	case "typing":
		tl.typing[f.From]++
	case "receipt":
		tl.receipts[f.By] = wire.Cursor{Received: f.Received, Read: f.Read}
	}
}

// readUntil feeds the connection's frames to tl until done(tl) holds, failing the test
// after timeout or on an error frame.
func (c *conn) readUntil(tl *tally, what string, timeout time.Duration, done func(*tally) bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	for len(c.held) > 0 && !done(tl) {
		tl.add(c.held[0])
		c.held = c.held[1:]
	}
	for !done(tl) {
		select {
		case f, ok := <-c.frames:
			if !ok {
				err := <-c.closed
				c.closed <- err
				c.t.Fatalf("connection closed while waiting for %s (%d messages, %d acks so far): %v", what, len(tl.msgs), len(tl.acks), err)
			}
			tl.add(f)
			if f.Type == "error" {
				c.t.Fatalf("error frame while waiting for %s: %+v", what, f)
			}
		case <-deadline:
			c.t.Fatalf("timed out after %s waiting for %s (%d messages, %d acks so far)", timeout, what, len(tl.msgs), len(tl.acks))
		}
	}
}

// drain feeds every frame to tl until the connection closes (it must already be
// closing), and returns the close error.
func (c *conn) drain(tl *tally, timeout time.Duration) error {
	c.t.Helper()
	for len(c.held) > 0 {
		tl.add(c.held[0])
		c.held = c.held[1:]
	}
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				err := <-c.closed
				c.closed <- err
				return err
			}
			tl.add(f)
		case <-deadline:
			c.t.Fatalf("connection still open %s after its server died", timeout)
		}
	}
}

// sendMany sends n chat frames with ids prefix-0 … prefix-(n-1) as fast as the socket
// takes them, on its own goroutine; the returned channel yields how many were written
// and the first write error (expected when the server dies meanwhile).
type sendResult struct {
	sent int
	err  error
}

func (c *conn) sendMany(prefix string, n int) <-chan sendResult {
	res := make(chan sendResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := range n {
			f := map[string]string{"type": "send", "id": fmt.Sprintf("%s-%d", prefix, i), "text": fmt.Sprintf("%s says %d", prefix, i)}
			if err := wsjson.Write(ctx, c.ws, f); err != nil {
				res <- sendResult{i, err}
				return
			}
		}
		res <- sendResult{n, nil}
	}()
	return res
}

// checkAcked fails unless every acknowledged client id in acks is in the replay
// msgs at the seq its ack gave.
func checkAcked(t *testing.T, msgs []frame, acks ...map[string]int64) {
	t.Helper()
	stored := map[string]int64{}
	for _, m := range msgs {
		stored[m.ID] = m.Seq
	}
	for _, acks := range acks {
		for id, seq := range acks {
			if stored[id] != seq {
				t.Fatalf("%s was acked at seq %d, the replay has it at %d", id, seq, stored[id])
			}
		}
	}
}

// checkOnce fails unless msgs are exactly seqs from..to, in order, and no client id
// appears twice.
func checkOnce(t *testing.T, who string, msgs []frame, from, to int64) {
	t.Helper()
	checkSeqs(t, who, msgs, from, to)
	seen := map[string]int64{}
	for _, m := range msgs {
		if s, dup := seen[m.ID]; dup {
			t.Fatalf("%s: client id %s stored twice, at seq %d and %d", who, m.ID, s, m.Seq)
		}
		seen[m.ID] = m.Seq
	}
}

// storedSeqs reads the seqs of a session's messages from the message store, in order.
func (c *cluster) storedSeqs(session string) []int64 {
	c.t.Helper()
	if c.messages == "dynamodb" {
		return c.p.dynamoSeqs(c.t, session)
	}
	rows, err := c.p.db.Query("SELECT seq FROM messages WHERE session_id = ? ORDER BY seq", session)
	if err != nil {
		c.t.Fatalf("reading messages from MariaDB: %v", err)
	}
	defer rows.Close()
	var seqs []int64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			c.t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	if err := rows.Err(); err != nil {
		c.t.Fatal(err)
	}
	return seqs
}

// dynamoSeqs reads the seqs of a session's messages from DynamoDB (guards, at
// negative seqs, are left out), in order.
func (p *production) dynamoSeqs(t *testing.T, session string) []int64 {
	t.Helper()
	var seqs []int64
	var start map[string]types.AttributeValue
	for {
		out, err := p.dynamo.Query(context.Background(), &dynamodb.QueryInput{
			TableName:                aws.String(p.table),
			KeyConditionExpression:   aws.String("sessionId = :s AND #q > :z"),
			ExpressionAttributeNames: map[string]string{"#q": "seq"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":s": &types.AttributeValueMemberS{Value: session},
				":z": &types.AttributeValueMemberN{Value: "0"},
			},
			ProjectionExpression: aws.String("#q"),
			ConsistentRead:       aws.Bool(true),
			ExclusiveStartKey:    start,
		})
		if err != nil {
			t.Fatalf("query DynamoDB: %v", err)
		}
		for _, item := range out.Items {
			n, ok := item["seq"].(*types.AttributeValueMemberN)
			if !ok {
				t.Fatalf("DynamoDB item without a numeric seq: %v", item)
			}
			s, err := strconv.ParseInt(n.Value, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return seqs
		}
		start = out.LastEvaluatedKey
	}
}

// s3Keys lists the objects under the test's S3 prefix.
func (p *production) s3Keys(t *testing.T) []string {
	t.Helper()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(p.s3.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(p.s3.AccessKey, p.s3.SecretKey, ""),
	})
	out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{
		Bucket: aws.String(p.s3.Bucket), Prefix: aws.String(p.s3prefix),
	})
	if err != nil {
		t.Fatalf("listing S3: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// TestReplicasChat: the host on replica A and the participant on replica B send
// messages as fast as they can, at the same time (so the replicas race for every seq);
// both see all of them exactly once, in seq order, the store holds exactly those, and
// each sees the other come online and go offline across the replicas.
//
// With messages in MariaDB they exchange 1,000 each. DynamoDB's stand-in (dynalite)
// manages about 35 contended appends per second to one session on this machine, so its
// case sends 100 each; TestReplicaKilled and TestRedisSubscriberDropped also race the
// replicas on DynamoDB.
func TestReplicasChat(t *testing.T) {
	for _, tc := range []struct {
		messages string
		each     int
	}{
		{"mariadb", 1000},
		{"dynamodb", 100},
	} {
		t.Run(tc.messages, func(t *testing.T) { replicasChat(t, tc.messages, tc.each) })
	}
}

func replicasChat(t *testing.T, messages string, each int) {
	c := newCluster(t, messages)
	a1, b1 := c.replica(), c.replica()
	c.worker()

	room := "replicas"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, aw := ann.mustDial("")
	if aw.Role != "host" || aw.Peer == nil || *aw.Peer != bob.email { // Bob's join took the seat
		t.Fatalf("ann's welcome on A: %+v (peer %s)", aw, fmtPeer(aw.Peer))
	}
	b, bw := bob.mustDial("")
	if bw.Role != "participant" || bw.Session != aw.Session || bw.Peer == nil || *bw.Peer != ann.email {
		t.Fatalf("bob's welcome on B: %+v (peer %s)", bw, fmtPeer(bw.Peer))
	}
	at, bt := newTally(), newTally()
	a.readUntil(at, "bob online (published by B)", 10*time.Second, func(tl *tally) bool { return tl.presence[bob.email] })
	b.readUntil(bt, "ann online (as B reads it)", 10*time.Second, func(tl *tally) bool { return tl.presence[ann.email] })

	start := time.Now()
	as, bs := a.sendMany("a", each), b.sendMany("b", each)
	all := func(tl *tally) bool { return len(tl.msgs) >= 2*each && len(tl.acks) >= each }
	a.readUntil(at, "all messages and ann's acks", 2*time.Minute, all)
	b.readUntil(bt, "all messages and bob's acks", 2*time.Minute, all)
	for who, r := range map[string]sendResult{"ann": <-as, "bob": <-bs} {
		if r.err != nil {
			t.Fatalf("%s's sends: %d written, then %v", who, r.sent, r.err)
		}
	}
	t.Logf("%d messages in %s across two replicas", 2*each, time.Since(start).Round(time.Millisecond))

	total := int64(2 * each)
	checkOnce(t, "ann on A", at.msgs, 1, total)
	checkOnce(t, "bob on B", bt.msgs, 1, total)
	acked := map[int64]string{}
	for who, tl := range map[string]*tally{"a": at, "b": bt} {
		for id, seq := range tl.acks {
			if !strings.HasPrefix(id, who+"-") {
				t.Fatalf("%s got the ack of %s", who, id)
			}
			if other, dup := acked[seq]; dup {
				t.Fatalf("seq %d acked to both %s and %s", seq, other, id)
			}
			acked[seq] = id
		}
	}
	for i, m := range at.msgs {
		if bt.msgs[i].ID != m.ID || acked[m.Seq] != m.ID {
			t.Fatalf("seq %d: ann saw %s, bob saw %s, acked to %s", m.Seq, m.ID, bt.msgs[i].ID, acked[m.Seq])
		}
		wantFrom := ann.email
		if strings.HasPrefix(m.ID, "b-") {
			wantFrom = bob.email
		}
		if m.From != wantFrom {
			t.Fatalf("seq %d (%s) from %s, want %s", m.Seq, m.ID, m.From, wantFrom)
		}
	}
	if got := c.storedSeqs(aw.Session); len(got) != 2*each || got[0] != 1 || got[len(got)-1] != total {
		t.Fatalf("%s holds %d messages of the session, want seq 1..%d", messages, len(got), 2*each)
	}

	// The v1.1 signals cross replicas through the broker: ann types on A, bob on B
	// sees it; bob reads everything on B, ann on A gets his receipt; neither has a seq.
	a.send(map[string]string{"type": "typing"})
	b.readUntil(bt, "ann typing (published by A)", 10*time.Second, func(tl *tally) bool { return tl.typing[ann.email] > 0 })
	b.send(map[string]any{"type": "read", "seq": total})
	a.readUntil(at, "bob's receipt (published by B)", 10*time.Second, func(tl *tally) bool {
		return tl.receipts[bob.email] == wire.Cursor{Received: total, Read: total}
	})
	if at.typing[ann.email] != 0 {
		t.Fatalf("ann got her own typing")
	}

	// Bob leaves B: ann, on A, sees him go offline; he comes back and she leaves.
	b.ws.CloseNow()
	a.readUntil(at, "bob offline", 10*time.Second, func(tl *tally) bool { return !tl.presence[bob.email] })
	b2, bw2 := bob.mustDial(fmt.Sprintf("after=%d", 2*each))
	if bw2.LastSeq != total {
		t.Fatalf("bob's welcome on return: last_seq %d, want %d", bw2.LastSeq, 2*each)
	}
	bt2 := newTally()
	b2.readUntil(bt2, "ann online on bob's return", 10*time.Second, func(tl *tally) bool { return tl.presence[ann.email] })
	a.readUntil(at, "bob online again", 10*time.Second, func(tl *tally) bool { return tl.presence[bob.email] })
	a.ws.CloseNow()
	b2.readUntil(bt2, "ann offline", 10*time.Second, func(tl *tally) bool { return !tl.presence[ann.email] })
	if len(bt2.msgs) != 0 || len(at.msgs) != 2*each {
		t.Fatalf("after the chat: bob's return replayed %d messages, ann got %d in all (want 0, %d)", len(bt2.msgs), len(at.msgs), 2*each)
	}
}

// TestReplicaKilled: both people send as fast as they can; replica B, bob's, is
// killed (SIGKILL) mid-chat. Bob reconnects through A with after=<last seq he saw>
// and gets every message he missed exactly once; resending what was never acked
// stores each message once; a replay from seq 0 and DynamoDB itself hold every
// acknowledged message at its acknowledged seq, with no gap and no repeat.
func TestReplicaKilled(t *testing.T) {
	c := newCluster(t, "dynamodb")
	a1, b1 := c.replica(), c.replica()
	c.worker()

	const each = 150
	room := "killed"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, aw := ann.mustDial("")
	b, _ := bob.mustDial("")
	at, bt := newTally(), newTally()
	as, bs := a.sendMany("a", each), b.sendMany("b", each)
	b.readUntil(bt, "bob's first 40 acks", 30*time.Second, func(tl *tally) bool { return len(tl.acks) >= 40 })
	b1.Kill()
	<-bs // a write error once B is gone, or everything written before it died
	b.drain(bt, 10*time.Second)
	last := int64(len(bt.msgs))
	checkOnce(t, "bob on B before the kill", bt.msgs, 1, last)
	if r := <-as; r.err != nil {
		t.Fatalf("ann's sends to A: %d written, then %v", r.sent, r.err)
	}
	a.readUntil(at, "acks of all ann's messages", 2*time.Minute, func(tl *tally) bool { return len(tl.acks) >= each })
	t.Logf("B killed after bob saw %d messages and had %d acks", last, len(bt.acks))

	// Bob's page reconnects through the load balancer, which now sends it to A.
	bobA := bob.on(a1)
	b2, bw := bobA.mustDial(fmt.Sprintf("after=%d", last))
	bt2 := newTally()
	b2.readUntil(bt2, "what bob missed", 30*time.Second, func(tl *tally) bool { return int64(len(tl.msgs)) >= bw.LastSeq-last })
	checkOnce(t, "bob's catch-up on A", bt2.msgs, last+1, bw.LastSeq)
	for id, seq := range bt.acks {
		if seq > bw.LastSeq {
			t.Fatalf("%s was acked at seq %d, but after the kill the session ends at seq %d", id, seq, bw.LastSeq)
		}
	}

	// Bob resends whatever B never acknowledged: stored once whether or not B stored it.
	var resend []string
	for i := range each {
		if id := fmt.Sprintf("b-%d", i); bt.acks[id] == 0 {
			resend = append(resend, id)
			b2.send(map[string]string{"type": "send", "id": id, "text": fmt.Sprintf("b says %d", i)})
		}
	}
	b2.readUntil(bt2, "acks of bob's resends", 2*time.Minute, func(tl *tally) bool { return len(tl.acks) >= len(resend) })

	// A fresh connection replays the whole session; it must hold every acked message.
	ann2, w2 := ann.mustDial("")
	if w2.LastSeq != 2*each {
		t.Fatalf("after the resends the session ends at seq %d, want %d (one per client id)", w2.LastSeq, 2*each)
	}
	rt := newTally()
	ann2.readUntil(rt, "the replay from seq 0", time.Minute, func(tl *tally) bool { return int64(len(tl.msgs)) >= w2.LastSeq })
	checkOnce(t, "replay from A", rt.msgs, 1, w2.LastSeq)
	checkAcked(t, rt.msgs, at.acks, bt.acks, bt2.acks)
	if got := c.storedSeqs(aw.Session); int64(len(got)) != w2.LastSeq || got[len(got)-1] != w2.LastSeq {
		t.Fatalf("DynamoDB holds %d messages (last %v), the replay %d", len(got), got[len(got)-1:], w2.LastSeq)
	}
	a.readUntil(at, "every message on ann's first connection", time.Minute, func(tl *tally) bool { return int64(len(tl.msgs)) >= w2.LastSeq })
	checkOnce(t, "ann on A throughout", at.msgs, 1, w2.LastSeq)
}

// TestRedisSubscriberDropped: while both people send, replica B's Redis subscriber
// connection is killed (CLIENT KILL), so B misses what is published until go-redis
// reconnects; B's hub catches up from the store by seq and both people still see
// every message exactly once, in order.
func TestRedisSubscriberDropped(t *testing.T) {
	c := newCluster(t, "dynamodb")
	a1, b1 := c.replica(), c.replica()
	c.worker()
	subName := "parley-sub-" + logValue(t, b1, "replica")

	const each = 150
	room := "dropped"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, _ := ann.mustDial("")
	b, _ := bob.mustDial("")
	at, bt := newTally(), newTally()
	as, bs := a.sendMany("a", each), b.sendMany("b", each)
	b.readUntil(bt, "the first 60 messages on B", 30*time.Second, func(tl *tally) bool { return len(tl.msgs) >= 60 })
	rdb := c.redis()
	oldID := clientID(t, rdb, subName)
	if err := rdb.ClientKillByFilter(context.Background(), "ID", oldID).Err(); err != nil {
		t.Fatalf("CLIENT KILL ID %s (%s): %v", oldID, subName, err)
	}
	all := func(tl *tally) bool { return len(tl.msgs) >= 2*each && len(tl.acks) >= each }
	a.readUntil(at, "all messages and ann's acks", 2*time.Minute, all)
	b.readUntil(bt, "all messages and bob's acks", 2*time.Minute, all)
	for who, r := range map[string]sendResult{"ann": <-as, "bob": <-bs} {
		if r.err != nil {
			t.Fatalf("%s's sends: %d written, then %v", who, r.sent, r.err)
		}
	}
	checkOnce(t, "ann on A", at.msgs, 1, 2*each)
	checkOnce(t, "bob on B", bt.msgs, 1, 2*each)
	if newID := clientID(t, rdb, subName); newID == oldID {
		t.Fatalf("B's subscriber connection %s was not replaced", oldID)
	}
	waitLog(t, b1, "redis subscriber connection restored", 10*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return bob.get("/readyz") == 200
	}, "B's /readyz to answer 200 again")
}

// logValue returns the value of key= in the first log line of s that has it.
func logValue(t *testing.T, s *server, key string) string {
	t.Helper()
	for _, line := range strings.Split(s.logs.String(), "\n") {
		for _, field := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(field, key+"="); ok {
				return v
			}
		}
	}
	t.Fatalf("no %s= in the log of %s:\n%s", key, s.Addr, s.logs)
	return ""
}

// redis returns a client of the cluster's Redis database.
func (c *cluster) redis() *redis.Client {
	c.t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	opts.DB = c.db
	rdb := redis.NewClient(opts)
	c.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// clientID finds the connection named name in CLIENT LIST and returns its id, waiting
// for it to (re)appear.
func clientID(t *testing.T, rdb *redis.Client, name string) string {
	t.Helper()
	var id string
	testenv.Eventually(t, 10*time.Second, func() bool {
		list, err := rdb.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		for _, line := range strings.Split(list, "\n") {
			fields := map[string]string{}
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				fields[k] = v
			}
			if fields["name"] == name {
				id = fields["id"]
				return true
			}
		}
		return false
	}, "Redis client "+name)
	return id
}

// TestEndChatTwoWorkers: a chat across two replicas ends while two workers run, whose
// sweepers keep enqueueing the ending session. The export completes once: one S3
// object, one email per person in Mailpit, the session row completed, and both people,
// on their replicas, get the transcript frame. Then two
// workers with a purge schedule of every two seconds (two schedulers at once) purge
// the session's DynamoDB items, once.
func TestEndChatTwoWorkers(t *testing.T) {
	c := newCluster(t, "dynamodb")
	a1, b1 := c.replica(), c.replica()
	// No purge before the export is confirmed; both workers' sweepers enqueue the
	// ending session again and again while it exports, so the export task is offered
	// to both workers many times.
	opts := []string{"PARLEY_PURGE_SCHEDULE=0 0 1 1 *", "PARLEY_SWEEP_INTERVAL=50ms"}
	w1, w2 := c.worker(opts...), c.worker(opts...)

	room := "ending"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, aw := ann.mustDial("")
	b, _ := bob.mustDial("")
	a.say("a-1", "hello from A")
	b.say("b-1", "hello from B")
	checkSeqs(t, "ann", a.messagesUntil(2), 1, 2)
	checkSeqs(t, "bob", b.messagesUntil(2), 1, 2)
	a.send(map[string]string{"type": "end"})
	for who, cn := range map[string]*conn{"ann on A": a, "bob on B": b} {
		if f := cn.next("ended"); f.By != ann.email {
			t.Fatalf("%s: ended by %q, want %s", who, f.By, ann.email)
		}
		if f := cn.next("transcript"); f.URL != "/transcripts/"+aw.Session {
			t.Fatalf("%s: transcript url %q", who, f.URL)
		}
	}

	var status, key string
	err := c.p.db.QueryRow("SELECT status, archive_key FROM sessions WHERE id = ?", aw.Session).Scan(&status, &key)
	if err != nil || status != "completed" || key == "" {
		t.Fatalf("session row after the export: status %q archive_key %q err %v", status, key, err)
	}
	if keys := c.p.s3Keys(t); len(keys) != 1 || !strings.HasSuffix(keys[0], key) {
		t.Fatalf("S3 holds %q under the test's prefix, want the one archive %s", keys, key)
	}
	for _, who := range []string{ann.email, bob.email} {
		if mails := c.p.mailTo(t, who); len(mails) != 1 {
			t.Fatalf("Mailpit holds %d emails to %s, want 1", len(mails), who)
		}
	}
	exports := strings.Count(w1.logs.String()+w2.logs.String(), `msg="transcript exported"`)
	if exports != 1 {
		t.Fatalf("the workers exported the transcript %d times, want once", exports)
	}
	if n := c.p.countItems(t, aw.Session); n == 0 {
		t.Fatal("the session's items are gone before any purge ran")
	}

	// The operator shortens the purge schedule: both workers restart with it.
	w1.Stop()
	w2.Stop()
	every := []string{"PARLEY_PURGE_SCHEDULE=@every 2s", "PARLEY_LOG_LEVEL=debug"}
	w3, w4 := c.worker(every...), c.worker(every...)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return c.p.countItems(t, aw.Session) == 0
	}, "the scheduled purge to delete the session's DynamoDB items")
	logs := func() string { return w3.logs.String() + w4.logs.String() }
	testenv.Eventually(t, 15*time.Second, func() bool {
		return strings.Count(logs(), "purge already enqueued for the day") >= 2
	}, "two more ticks of the day to find its purge done")
	if n := strings.Count(logs(), `msg="messages purged"`); n != 1 {
		t.Fatalf("the session's messages were purged %d times, want once:\n%s", n, logs())
	}
	var purged bool
	if err := c.p.db.QueryRow("SELECT purged_at IS NOT NULL FROM sessions WHERE id = ?", aw.Session).Scan(&purged); err != nil || !purged {
		t.Fatalf("session row after the purge: purged %v, err %v", purged, err)
	}
	body := ann.download(t, "/transcripts/"+aw.Session, c.p.s3.Endpoint)
	if !strings.Contains(string(body), "hello from B") {
		t.Fatalf("the archived transcript lacks bob's message:\n%s", body)
	}
}

// TestPresenceAfterReplicaDies: bob's replica dies (SIGKILL) and bob does not come
// back. Ann, connected to A the whole time, must be told within the presence expiry
// (PARLEY_PRESENCE_TTL, plus a margin) that bob is offline.
func TestPresenceAfterReplicaDies(t *testing.T) {
	// Short presence expiry and check, so the test takes seconds, not the 20 s default.
	c := newCluster(t, "dynamodb", "PARLEY_PRESENCE_TTL=3s", "PARLEY_PRESENCE_CHECK=300ms")
	a1, b1 := c.replica(), c.replica()

	room := "vanished"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, _ := ann.mustDial("")
	bob.mustDial("")
	at := newTally()
	a.readUntil(at, "bob online", 10*time.Second, func(tl *tally) bool { return tl.presence[bob.email] })
	b1.Kill()
	start := time.Now()
	a.readUntil(at, "bob offline after his replica died", 15*time.Second, func(tl *tally) bool { return !tl.presence[bob.email] })
	t.Logf("ann saw bob offline %s after his replica died", time.Since(start).Round(time.Millisecond))
}

// TestReplicaStopped: replica B is stopped gracefully (SIGTERM) mid-chat. Bob's socket
// is closed with 1001 going away; he reconnects through A with after=<last seq> and
// gets exactly what he missed, and ann is told he went offline and came back.
func TestReplicaStopped(t *testing.T) {
	c := newCluster(t, "dynamodb")
	a1, b1 := c.replica(), c.replica()

	room := "stopped"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, _ := ann.mustDial("")
	b, _ := bob.mustDial("")
	a.say("a-1", "before the stop")
	b.say("b-1", "me too")
	checkSeqs(t, "bob", b.messagesUntil(2), 1, 2)
	at := newTally()
	a.readUntil(at, "bob online", 10*time.Second, func(tl *tally) bool { return tl.presence[bob.email] })

	b1.Stop()
	if code := b.closeStatus(10 * time.Second); code != 1001 {
		t.Fatalf("bob's socket on the stopped replica closed with %d, want 1001 going away", code)
	}
	a.readUntil(at, "bob offline", 10*time.Second, func(tl *tally) bool { return !tl.presence[bob.email] })
	a.say("a-2", "while you were away")
	b2, bw := bob.on(a1).mustDial("after=2")
	if bw.LastSeq != 3 {
		t.Fatalf("bob's welcome on A: last_seq %d, want 3", bw.LastSeq)
	}
	checkOnce(t, "bob's catch-up on A", b2.messagesUntil(3), 3, 3)
	a.readUntil(at, "bob online again", 10*time.Second, func(tl *tally) bool { return tl.presence[bob.email] })
}
