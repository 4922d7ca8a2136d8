package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket/wsjson"
	"github.com/redis/go-redis/v9"

	"parley/internal/testenv"
)

// newRedisClusterDeployment is newCluster on the test Redis Cluster
// (PARLEY_REDIS_CLUSTER_URL) with sessions and messages in MariaDB. The cluster has a
// single database, so the deployment gets a Redis prefix (and asynq queue) of its own.
// It returns the deployment, an admin client of the cluster and the bus's key prefix.
func newRedisClusterDeployment(t *testing.T) (*cluster, *redis.ClusterClient, string) {
	t.Helper()
	url := testenv.RedisClusterURL(t)
	opts, err := redis.ParseClusterURL(url)
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClusterClient(opts)
	t.Cleanup(func() { admin.Close() })
	prefix := strings.ReplaceAll(testenv.UniqueName(t, "e2e"), "-", "_")
	p := newProduction(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := &cluster{t: t, p: p, messages: "mariadb"}
	for _, kv := range p.env {
		if !strings.HasPrefix(kv, "PARLEY_DYNAMODB_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, "PARLEY_MYSQL_MESSAGES=true",
		"PARLEY_REDIS_CLUSTER_URL="+url, "PARLEY_REDIS_PREFIX="+prefix,
		"PARLEY_COOKIE_KEY="+hex.EncodeToString(key),
		"PARLEY_RATE=100000", "PARLEY_RATE_BURST=100000")
	p.run(t, t.TempDir(), "migrate", "--create-bucket")
	t.Cleanup(func() {
		ctx := context.Background()
		_ = admin.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			for _, pattern := range []string{prefix + ":*", "asynq:{" + prefix + "}:*"} {
				iter := n.Scan(ctx, 0, pattern, 1000).Iterator()
				for iter.Next(ctx) {
					n.Del(ctx, iter.Val())
				}
			}
			return nil
		})
	})
	return c, admin, prefix + ":"
}

// shardChannelsPerNode returns how many of the deployment's channels PUBSUB
// SHARDCHANNELS lists on each master.
func shardChannelsPerNode(t *testing.T, admin *redis.ClusterClient, prefix string) map[string]int {
	t.Helper()
	got := map[string]int{}
	err := admin.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		chans, err := n.PubSubShardChannels(ctx, prefix+"*").Result()
		if err != nil {
			return err
		}
		// ForEachMaster runs concurrently; each node writes its own key once.
		return setCount(got, n.Options().Addr, len(chans))
	})
	if err != nil {
		t.Fatalf("PUBSUB SHARDCHANNELS: %v", err)
	}
	return got
}

// sendPaced is sendMany with a pause between messages; sent, when not nil, counts
// the messages written so far.
func (c *conn) sendPaced(prefix string, n int, every time.Duration, sent *atomic.Int64) <-chan sendResult {
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
			if sent != nil {
				sent.Add(1)
			}
			time.Sleep(every)
		}
		res <- sendResult{n, nil}
	}()
	return res
}

var countMu = make(chan struct{}, 1)

func setCount(m map[string]int, k string, v int) error {
	countMu <- struct{}{}
	m[k] = v
	<-countMu
	return nil
}

// TestRedisCluster: two `parley serve` replicas and a `parley worker` over a Redis
// Cluster of three masters (one replica each), sessions and messages in MariaDB.
//   - Ann on replica A and Bob on replica B exchange 200 messages each way at full
//     speed: both see all 400 exactly once, in seq order, as stored.
//   - 30 more rooms chat across the replicas at once: their channels are spread over
//     at least two of the three masters (sharded pub/sub, one channel per chat).
//   - While Ann and Bob send 100 more each, the master serving their chat hands over
//     to its replica (CLUSTER FAILOVER): every acked message still reaches both once.
//   - Ann ends the chat: the worker exports it (asynq on the cluster), both get the
//     transcript frame, and the transcript is served.
func TestRedisCluster(t *testing.T) {
	c, admin, prefix := newRedisClusterDeployment(t)
	a1, b1 := c.replica(), c.replica()
	c.worker()

	room := "cluster"
	ann := join(t, a1.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, a1.URL, room, testenv.UniqueName(t, "bob")+"@example.org").on(b1)
	a, aw := ann.mustDial("")
	b, bw := bob.mustDial("")
	if bw.Session != aw.Session {
		t.Fatalf("ann and bob are in different chats: %s, %s", aw.Session, bw.Session)
	}
	at, bt := newTally(), newTally()
	a.readUntil(at, "bob online (published by B)", 10*time.Second, func(tl *tally) bool { return tl.presence[bob.email] })
	b.readUntil(bt, "ann online (as B reads it)", 10*time.Second, func(tl *tally) bool { return tl.presence[ann.email] })

	// 200 each way.
	var sentA atomic.Int64
	exchange := func(prefixA, prefixB string, each int, during func()) {
		t.Helper()
		var as, bs <-chan sendResult
		if during == nil {
			as, bs = a.sendMany(prefixA, each), b.sendMany(prefixB, each)
		}
		if during != nil {
			// Paced, so the failover happens while messages are in flight.
			as, bs = a.sendPaced(prefixA, each, 10*time.Millisecond, &sentA), b.sendPaced(prefixB, each, 10*time.Millisecond, nil)
		}
		want := len(at.msgs) + 2*each
		acksA, acksB := len(at.acks)+each, len(bt.acks)+each
		if during != nil {
			a.readUntil(at, "the first messages", time.Minute, func(tl *tally) bool { return len(tl.msgs) >= want-2*each+each/4 })
			during()
		}
		a.readUntil(at, "all messages and ann's acks", 2*time.Minute, func(tl *tally) bool { return len(tl.msgs) >= want && len(tl.acks) >= acksA })
		b.readUntil(bt, "all messages and bob's acks", 2*time.Minute, func(tl *tally) bool { return len(tl.msgs) >= want && len(tl.acks) >= acksB })
		for who, r := range map[string]sendResult{"ann": <-as, "bob": <-bs} {
			if r.err != nil {
				t.Fatalf("%s's sends: %d written, then %v", who, r.sent, r.err)
			}
		}
	}
	start := time.Now()
	exchange("a", "b", 200, nil)
	t.Logf("400 messages across two replicas in %s", time.Since(start).Round(time.Millisecond))
	checkOnce(t, "ann on A", at.msgs, 1, 400)
	checkOnce(t, "bob on B", bt.msgs, 1, 400)

	// 30 rooms chat across the replicas while their channels are counted per master.
	const rooms = 30
	for i := range rooms {
		r := fmt.Sprintf("busy-%d", i)
		h := join(t, a1.URL, r, testenv.UniqueName(t, fmt.Sprintf("h%d", i))+"@example.org")
		g := join(t, a1.URL, r, testenv.UniqueName(t, fmt.Sprintf("g%d", i))+"@example.org").on(b1)
		hc, _ := h.mustDial("")
		gc, _ := g.mustDial("")
		hc.say("h-1", "hello from A")
		gc.say("g-1", "hello from B")
		checkSeqs(t, r+" host", hc.messagesUntil(2), 1, 2)
		checkSeqs(t, r+" guest", gc.messagesUntil(2), 1, 2)
	}
	// Counted until they agree: another test's failover moves channels for a moment.
	var per map[string]int
	testenv.Eventually(t, 10*time.Second, func() bool {
		per = shardChannelsPerNode(t, admin, prefix)
		nodes, total := 0, 0
		for _, n := range per {
			total += n
			if n > 0 {
				nodes++
			}
		}
		return nodes >= 2 && total == rooms+1
	}, fmt.Sprintf("%d chats' channels on at least two of the masters (last count %v)", rooms+1, per))
	t.Logf("shard channels per master with %d chats open: %v", rooms+1, per)

	// A failover of the chat's master while both send.
	channel := prefix + "{" + aw.Session + "}:events"
	testenv.LockCluster(t)
	exchange("a2", "b2", 100, func() {
		before := sentA.Load()
		testenv.ClusterFailover(t, admin, channel)
		t.Logf("ann had sent %d of her 100 messages when the failover began, %d when it was done", before, sentA.Load())
	})
	for _, s := range []*server{a1, b1} {
		waitLog(t, s, "redis subscriber connection restored", 15*time.Second) // moved to the new master
	}
	checkOnce(t, "ann on A after the failover", at.msgs, 1, 600)
	checkOnce(t, "bob on B after the failover", bt.msgs, 1, 600)
	for who, tl := range map[string]*tally{"ann": at, "bob": bt} {
		for i, m := range tl.msgs {
			if other := at.msgs[i]; m.ID != other.ID {
				t.Fatalf("%s: seq %d is %s, ann saw %s", who, m.Seq, m.ID, other.ID)
			}
		}
	}
	if got := c.storedSeqs(aw.Session); len(got) != 600 || got[0] != 1 || got[599] != 600 {
		t.Fatalf("MariaDB holds %d messages of the chat, want seq 1..600", len(got))
	}

	// The export runs on the worker, through asynq on the cluster.
	a.send(map[string]string{"type": "end"})
	for who, cn := range map[string]*conn{"ann on A": a, "bob on B": b} {
		if f := cn.next("ended"); f.By != ann.email {
			t.Fatalf("%s: ended by %q, want %s", who, f.By, ann.email)
		}
		if f := cn.next("transcript"); f.URL != "/transcripts/"+aw.Session {
			t.Fatalf("%s: transcript url %q", who, f.URL)
		}
	}
	body := bob.download(t, "/transcripts/"+aw.Session, c.p.s3.Endpoint)
	if !strings.Contains(string(body), "b2 says 99") || !strings.Contains(string(body), "a says 0") {
		t.Fatalf("the transcript lacks messages:\n%.500s", body)
	}
}
