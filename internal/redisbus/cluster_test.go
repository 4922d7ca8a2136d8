package redisbus

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"parley/internal/testenv"
)

// clusterEnv is one test's share of the Redis Cluster: a unique prefix and an admin
// client.
type clusterEnv struct {
	url    string
	prefix string
	admin  *redis.ClusterClient
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	u := testenv.RedisClusterURL(t)
	opts, err := redis.ParseClusterURL(u)
	if err != nil {
		t.Fatal(err)
	}
	env := &clusterEnv{url: u, prefix: testenv.UniqueName(t, "parleytest") + ":", admin: redis.NewClusterClient(opts)}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = env.admin.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			iter := c.Scan(ctx, 0, env.prefix+"*", 100).Iterator()
			for iter.Next(ctx) {
				c.Del(ctx, iter.Val())
			}
			return nil
		})
		_ = env.admin.Close()
	})
	return env
}

func (env *clusterEnv) bus(t *testing.T, name string) *Bus {
	t.Helper()
	b, err := New(context.Background(), Options{
		URL: env.url, Cluster: true, Prefix: env.prefix, ReplicaID: name + "-" + randomID(), Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		HealthInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// shardChannels returns, per master address, how many of the test's channels
// PUBSUB SHARDCHANNELS lists there.
func (env *clusterEnv) shardChannels(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	var mu = make(chan struct{}, 1)
	err := env.admin.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		chans, err := c.PubSubShardChannels(ctx, env.prefix+"*").Result()
		mu <- struct{}{}
		out[c.Options().Addr] = len(chans)
		<-mu
		return err
	})
	if err != nil {
		t.Fatalf("PUBSUB SHARDCHANNELS: %v", err)
	}
	return out
}

// TestClusterFanOut: on a Redis Cluster, 30 chats subscribed on replica A get what
// replica B publishes, exactly once; their channels are spread over the masters
// (sharded pub/sub, one channel per chat); presence works across replicas; and the
// last local subscriber's leaving unsubscribes the channel on its shard.
func TestClusterFanOut(t *testing.T) {
	env := newClusterEnv(t)
	a, b := env.bus(t, "a"), env.bus(t, "b")
	ctx := context.Background()
	const chats = 30
	recs := make([]*recorder, chats)
	cancels := make([]func(), chats)
	for i := range chats {
		recs[i], cancels[i] = subscribe(t, a, fmt.Sprintf("s%d", i))
	}
	for i := range chats {
		for seq := int64(1); seq <= 3; seq++ {
			if err := b.Publish(ctx, messageEvent(fmt.Sprintf("s%d", i), seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, r := range recs {
		testenv.Eventually(t, 10*time.Second, func() bool { return len(r.snapshot()) >= 3 }, fmt.Sprintf("chat %d's three events", i))
		for j, ev := range r.snapshot() {
			if ev.Seq != int64(j+1) || ev.Session != fmt.Sprintf("s%d", i) {
				t.Fatalf("chat %d event %d: %+v", i, j, ev)
			}
		}
	}
	// Counted until they agree: a failover elsewhere moves channels for a moment.
	var per map[string]int
	testenv.Eventually(t, 10*time.Second, func() bool {
		per = env.shardChannels(t)
		nodes, total := 0, 0
		for _, n := range per {
			if n > 0 {
				nodes++
			}
			total += n
		}
		return nodes >= 2 && total == chats
	}, fmt.Sprintf("%d shard channels on at least two masters (last count %v)", chats, per))
	a.mu.Lock()
	held := len(a.nodes)
	a.mu.Unlock()
	if held > 3 {
		t.Fatalf("replica A holds %d subscriber connections, want at most one per master", held)
	}

	first, err := a.Connected(ctx, "s1", "ann@example.org")
	if err != nil || !first {
		t.Fatalf("Connected on A: %v %v", first, err)
	}
	if on, err := b.Online(ctx, "s1", "ann@example.org"); err != nil || !on {
		t.Fatalf("Online as B reads it: %v %v", on, err)
	}
	if last, err := a.Disconnected(ctx, "s1", "ann@example.org"); err != nil || !last {
		t.Fatalf("Disconnected on A: %v %v", last, err)
	}

	for _, c := range cancels {
		c()
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, n := range env.shardChannels(t) {
			if n != 0 {
				return false
			}
		}
		return true
	}, "every shard channel unsubscribed")
	for _, r := range recs {
		if n := len(r.snapshot()); n != 3 {
			t.Fatalf("a chat got %d events, want 3", n)
		}
	}
}

// TestClusterRejoin: a chat left and joined again at once (a page reload) unsubscribes
// and subscribes its channel back to back on one connection; Redis's confirmation of
// the unsubscription must not be taken for the server dropping the channel, which
// would replace the connection and make every chat of the replica catch up.
// TestClusterPublishBatch: a pipeline of sharded publishes, split across the masters
// that hold the channels, keeps every session's order.
func TestClusterPublishBatch(t *testing.T) {
	env := newClusterEnv(t)
	checkPublishBatch(t, env.bus(t, "a"), env.bus(t, "b"))
}

func TestClusterRejoin(t *testing.T) {
	env := newClusterEnv(t)
	a, b := env.bus(t, "a"), env.bus(t, "b")
	var reconnects atomic.Int32
	a.OnReconnect(func() { reconnects.Add(1) })
	ctx := context.Background()
	_, keep := subscribe(t, a, "other") // a second chat that must not be disturbed
	_ = keep
	for i := range 20 {
		_, cancel := subscribe(t, a, "s1")
		cancel()
		r, _ := subscribe(t, a, "s1")
		if err := b.Publish(ctx, messageEvent("s1", int64(i+1))); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(int64(i + 1)) }, "delivery after rejoining")
	}
	// A health interval for late confirmations to arrive.
	time.Sleep(3 * a.health)
	if n := reconnects.Load(); n != 0 {
		t.Fatalf("rejoining a chat replaced the subscriber connection %d times", n)
	}
}

// TestClusterFailover: the master serving a chat hands over to its replica (CLUSTER
// FAILOVER). The subscribing replica notices, subscribes the chat's channel on the new
// master, calls OnReconnect (so the hub catches up from the store), and delivers
// what is published afterwards.
func TestClusterFailover(t *testing.T) {
	testenv.LockCluster(t)
	env := newClusterEnv(t)
	a, b := env.bus(t, "a"), env.bus(t, "b")
	var reconnects atomic.Int32
	a.OnReconnect(func() { reconnects.Add(1) })
	ctx := context.Background()
	ch := a.channel("s1")
	// Right after an earlier failover, go-redis's map of the slots may still name the
	// old master: a subscription there (now the replica, which serves sharded
	// subscriptions too) would not be the one this test moves.
	testenv.Eventually(t, 10*time.Second, func() bool {
		cached, err1 := a.rc.Owner(ctx, ch)
		fresh, err2 := a.rc.Owners(ctx)
		return err1 == nil && err2 == nil && cached == fresh(ch)
	}, "A's map of the slots to be current")
	r, _ := subscribe(t, a, "s1")
	if err := b.Publish(ctx, messageEvent("s1", 1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(1) }, "seq 1")

	a.mu.Lock()
	before := a.channels[ch].node.addr
	a.mu.Unlock()
	oldMaster := testenv.ClusterFailover(t, env.admin, ch)
	if before != oldMaster {
		t.Fatalf("the channel was subscribed on %s, not on its master %s", before, oldMaster)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return reconnects.Load() >= 1 }, "OnReconnect after the failover")
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("Ping after the failover: %v", err)
	}
	var published error
	testenv.Eventually(t, 10*time.Second, func() bool {
		published = b.Publish(ctx, messageEvent("s1", 2))
		return published == nil
	}, "a publish to reach the new master")
	testenv.Eventually(t, 10*time.Second, func() bool { return r.hasSeq(2) }, "seq 2 after the failover")
	testenv.Eventually(t, 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		n := a.channels[ch].node
		return n != nil && !n.dead.Load() && n.addr != oldMaster
	}, "the channel to move off the old master")
	if got := len(r.snapshot()); got != 2 {
		t.Fatalf("got %d events, want 2", got)
	}
}
