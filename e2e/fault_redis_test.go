package e2e

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/internal/testenv"
)

// TestFaultRedisKilled: two replicas keep sessions and messages in MariaDB and fan
// out through a Redis of the test's own; ann is on one, bob on the other, five
// messages a second each. Redis is killed (SIGKILL) for five seconds, during which
// only ann writes, and then started again, empty, on the same port. Every ack comes
// within 1 s; what ann sent meanwhile reaches bob, exactly once and in order, within
// 10 s of being sent and at the latest 3 s after Redis is back; no connection closes.
func TestFaultRedisKilled(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	c := newCluster(t, "mariadb", "PARLEY_REDIS_URL="+r.URL())
	a1, b1 := c.replica(), c.replica()
	pr := enterPair(t, a1, b1, "redis-killed").watch()

	annSent, bobSent, killed, restarted := pr.oneWay(t, time.Second, 5*time.Second, 3*time.Second, r.Kill, r.Restart)
	pr.settle(t, annSent, bobSent, 30*time.Second)

	acks, shown := pr.ackDelays(annSent, bobSent), pr.peerDelays(annSent, bobSent)
	caughtUp := pr.caughtUp(annSent, bobSent, killed, restarted)
	t.Logf("%d messages; acks p50 %s, max %s; on the other replica's screen p50 %s, max %s; caught up %s after the restart",
		len(acks), percentile(acks, 0.5), percentile(acks, 1), percentile(shown, 0.5), percentile(shown, 1), caughtUp.Round(time.Millisecond))
	if worst := percentile(acks, 1); worst > time.Second {
		t.Errorf("an ack took %s; want every ack within 1 s while Redis is gone", worst)
	}
	if worst := percentile(shown, 1); worst > 10*time.Second {
		t.Errorf("a message took %s to reach the other replica's screen; want within 10 s", worst)
	}
	if caughtUp > 3*time.Second {
		t.Errorf("catch-up took %s after Redis came back; want within 3 s", caughtUp)
	}
}

// oneWay runs the scenario of the fault tests across replicas: both people send a
// message every 200 ms for before; then fault() runs and for during only ann sends
// (bob only reads, so what reaches his screen can only come through his replica
// catching up, not through gaps his own messages reveal); then heal() runs and both
// send for after. It returns when each message was sent, and when the fault began and
// was healed.
func (p *pair) oneWay(t *testing.T, before, during, after time.Duration, fault, heal func()) (ann, bob map[string]time.Time, from, back time.Time) {
	t.Helper()
	const gap = 200 * time.Millisecond
	annStop, bobStop := make(chan struct{}), make(chan struct{})
	annSent, annErr := pace(t, p.a, "a", gap, 0, annStop)
	bobBefore, bobErr := pace(t, p.b, "b-before", gap, 0, bobStop)
	time.Sleep(before)
	close(bobStop)
	if err := <-bobErr; err != nil {
		t.Fatalf("bob could not send: %v", err)
	}
	fault()
	from = time.Now()
	time.Sleep(during)
	heal()
	back = time.Now()
	bobStop = make(chan struct{})
	bobAfter, bobErr := pace(t, p.b, "b-after", gap, 0, bobStop)
	time.Sleep(after)
	close(annStop)
	close(bobStop)
	for who, errc := range map[string]<-chan error{"ann": annErr, "bob": bobErr} {
		if err := <-errc; err != nil {
			t.Fatalf("%s could not send: %v", who, err)
		}
	}
	ann, bob = annSent.times(), bobBefore.times()
	maps.Copy(bob, bobAfter.times())
	return ann, bob, from, back
}

// ackDelays returns, sorted, how long each message took from its sending to its ack.
func (p *pair) ackDelays(annSent, bobSent map[string]time.Time) []time.Duration {
	a, b := delays(annSent, p.as.ackTimes()), delays(bobSent, p.bs.ackTimes())
	all := append(a, b...)
	slices.Sort(all)
	return all
}

// caughtUp returns how long after back the last message sent between from and back
// reached the other person's screen (0 when all were there before back).
func (p *pair) caughtUp(annSent, bobSent map[string]time.Time, from, back time.Time) time.Duration {
	var last time.Time
	for _, side := range []struct {
		sent map[string]time.Time
		peer *screen
	}{{annSent, p.bs}, {bobSent, p.as}} {
		seen := side.peer.seenTimes()
		for id, at := range side.sent {
			if at.After(from) && at.Before(back) && seen[id].After(last) {
				last = seen[id]
			}
		}
	}
	return max(0, last.Sub(back))
}

// TestFaultRedisFrozen: one replica on SQLite fans out through a Redis of the test's
// own; ann and bob send ten messages a second each (half the default rate limit).
// Redis is frozen (SIGSTOP) for ten seconds mid-chat, as in a network partition. Every
// ack comes within 1 s, every message is on the other screen within 1 s, no
// connection is closed, nothing is lost or doubled, and /readyz answers 200 within
// 3 s, naming the broker as degraded (chats still work, so a load balancer must keep
// the replica), then plain ready once Redis is back.
func TestFaultRedisFrozen(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	srv := startServer(t, t.TempDir(), "PARLEY_REDIS_URL="+r.URL())
	pr := enterPair(t, srv, srv, "redis-frozen").watch()

	// The scenario runs on the clock: 2 s of chat, 10 s with Redis frozen, 2 s after.
	stop := make(chan struct{})
	wait := pr.talk(t, 100*time.Millisecond, stop)
	time.Sleep(2 * time.Second)
	r.Freeze()
	frozen := time.Now()
	time.Sleep(3 * time.Second)
	code, body, took := timedGet(t, srv.URL+"/readyz", 10*time.Second)
	t.Logf("/readyz with Redis frozen: %d %q in %s", code, strings.TrimSpace(body), took.Round(time.Millisecond))
	if code != http.StatusOK || took > 3*time.Second || !namesBroker(body) || !strings.HasPrefix(body, "degraded:") {
		t.Errorf("/readyz with Redis frozen answered %d %q after %s; want 200 naming the broker degraded within 3 s", code, body, took)
	}
	testenv.Eventually(t, time.Until(frozen.Add(9500*time.Millisecond)), func() bool { return metricValue(t, srv, "parley_broker_down") == 1 },
		"parley_broker_down to say 1 while Redis is frozen")
	t.Logf("parley_broker_down is 1 %s into the freeze", time.Since(frozen).Round(time.Millisecond))
	time.Sleep(time.Until(frozen.Add(10 * time.Second)))
	r.Thaw()
	thawed := time.Now()
	time.Sleep(2 * time.Second)
	close(stop)
	annSent, bobSent := wait()
	pr.settle(t, annSent, bobSent, 30*time.Second)

	acks := pr.ackDelays(annSent, bobSent)
	shown := pr.peerDelays(annSent, bobSent)
	t.Logf("%d messages; acks p50 %s, max %s; on the other screen p50 %s, max %s", len(acks),
		percentile(acks, 0.5), percentile(acks, 1), percentile(shown, 0.5), percentile(shown, 1))
	if worst := percentile(acks, 1); worst > time.Second {
		t.Errorf("an ack took %s; want every ack within 1 s with Redis frozen", worst)
	}
	if worst := percentile(shown, 1); worst > time.Second {
		t.Errorf("a message took %s to reach the other person on the same replica; want within 1 s", worst)
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		code, body, _ := timedGet(t, srv.URL+"/readyz", 5*time.Second)
		return code == http.StatusOK && body == "ready\n"
	}, "/readyz to answer ready once Redis is back")
	t.Logf("/readyz ready again %s after Redis was thawed; %v publishes failed", time.Since(thawed).Round(time.Millisecond),
		metricValue(t, srv, `parley_broker_publish_lost_total{outcome="failed"}`))
}

// TestFaultRedisFrozenReplicas: two replicas keep sessions and messages in MariaDB;
// ann is on one, bob on the other. Redis, their only link, is frozen (SIGSTOP) for ten
// seconds, during which only ann writes (see oneWay), so what bob sees then can only
// come from his replica catching up from the store. Nothing is lost or doubled, no
// connection is closed, every ack comes within 1 s, and every message is on the other
// person's screen within 16 s of being sent.
func TestFaultRedisFrozenReplicas(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	c := newCluster(t, "mariadb", "PARLEY_REDIS_URL="+r.URL())
	a1, b1 := c.replica(), c.replica()
	pr := enterPair(t, a1, b1, "redis-frozen-replicas").watch()

	annTimes, bobTimes, frozen, thawed := pr.oneWay(t, 2*time.Second, 10*time.Second, 3*time.Second, r.Freeze, r.Thaw)
	pr.settle(t, annTimes, bobTimes, 30*time.Second)

	acks := pr.ackDelays(annTimes, bobTimes)
	shown := pr.peerDelays(annTimes, bobTimes)
	t.Logf("%d messages; acks p50 %s, max %s; on the other replica's screen p50 %s, max %s; caught up %s after the thaw",
		len(acks), percentile(acks, 0.5), percentile(acks, 1), percentile(shown, 0.5), percentile(shown, 1),
		pr.caughtUp(annTimes, bobTimes, frozen, thawed).Round(time.Millisecond))
	if worst := percentile(acks, 1); worst > time.Second {
		t.Errorf("an ack took %s; want every ack within 1 s with Redis frozen", worst)
	}
	if worst := percentile(shown, 1); worst > 16*time.Second {
		t.Errorf("a message took %s to reach the other replica's screen; want within 16 s", worst)
	}
}

// peerDelays returns, sorted, how long each message took from its sending to the
// other person's screen.
func (p *pair) peerDelays(annSent, bobSent map[string]time.Time) []time.Duration {
	a, b := delays(annSent, p.bs.seenTimes()), delays(bobSent, p.as.seenTimes())
	all := append(a, b...)
	slices.Sort(all)
	return all
}

// namesBroker reports whether a /readyz body blames the fan-out (Redis) and nothing else.
func namesBroker(body string) bool {
	return (strings.Contains(body, "redis") || strings.Contains(body, "broker")) &&
		!strings.Contains(body, "sessions") && !strings.Contains(body, "messages")
}

// TestFaultRedisDownEnter: Redis, the only link between two replicas, is frozen
// (SIGSTOP) before two people enter a new chat, ann through one replica and bob
// through the other. Both get in at once and are told presence is degraded; their
// messages are acknowledged within 1 s and reach each other through the store within
// 8 s; nothing is closed; once Redis is back the chat goes on as usual.
func TestFaultRedisDownEnter(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	c := newCluster(t, "mariadb", "PARLEY_REDIS_URL="+r.URL())
	a1, b1 := c.replica(), c.replica()
	r.Freeze()
	start := time.Now()
	pr := enterPair(t, a1, b1, "redis-down-enter").watch()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("entering took %s with Redis frozen; want under 2 s", took)
	}
	pr.bs.waitUntil(t, "a presence frame saying presence is degraded", 10*time.Second, func(s *screen) bool { return s.degraded })

	sent := map[string]time.Time{"a-1": time.Now()}
	if err := pr.a.sendFrame(map[string]string{"type": "send", "id": "a-1", "text": "anyone there?"}); err != nil {
		t.Fatal(err)
	}
	pr.as.waitUntil(t, "ann's ack", time.Second, func(s *screen) bool { return len(s.acks) >= 1 })
	pr.bs.waitUntil(t, "ann's message, read from the store", 8*time.Second, func(s *screen) bool { return len(s.msgs) >= 1 })
	t.Logf("with Redis frozen, ann's message was acked in %s and on bob's screen in %s",
		delays(sent, pr.as.ackTimes())[0], delays(sent, pr.bs.seenTimes())[0])

	r.Thaw()
	bobSent := map[string]time.Time{"b-1": time.Now()}
	if err := pr.b.sendFrame(map[string]string{"type": "send", "id": "b-1", "text": "here now"}); err != nil {
		t.Fatal(err)
	}
	pr.settle(t, sent, bobSent, 10*time.Second)
	t.Logf("after the thaw, bob's message was on ann's screen in %s", delays(bobSent, pr.as.seenTimes())[0])
}

// TestFaultRedisDownEnd: ann and bob chat across two replicas linked by a Redis of
// the test's own. Redis is killed and ann ends the chat: bob's replica hears nothing
// through the broker, yet bob is told the chat ended within 6 s, from the store. Then,
// with Redis back, a second chat is ended while Redis is killed, and Redis is at once
// restarted empty: bob is told within 6 s too.
func TestFaultRedisDownEnd(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	c := newCluster(t, "mariadb", "PARLEY_REDIS_URL="+r.URL())
	a1, b1 := c.replica(), c.replica()
	for _, restartAtOnce := range []bool{false, true} {
		room := map[bool]string{false: "redis-down-end", true: "redis-restart-end"}[restartAtOnce]
		pr := enterPair(t, a1, b1, room).watch()
		r.Kill()
		start := time.Now()
		if err := pr.a.sendFrame(map[string]string{"type": "end"}); err != nil {
			t.Fatal(err)
		}
		pr.as.waitUntil(t, "the end of her own chat", 2*time.Second, func(s *screen) bool { return s.endedBy != "" })
		if restartAtOnce {
			r.Restart()
		}
		pr.bs.waitUntil(t, "ann's end ("+room+")", 6*time.Second, func(s *screen) bool { return s.endedBy == pr.ann.email })
		t.Logf("%s: bob was told the chat ended in %s", room, time.Since(start).Round(time.Millisecond))
		if !restartAtOnce {
			r.Restart()
			for _, s := range []*server{a1, b1} {
				testenv.Eventually(t, 20*time.Second, func() bool { return metricValue(t, s, "parley_broker_down") == 0 },
					"both replicas find Redis healthy again")
			}
		}
	}
}
