package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestFaultMariaDBSlow: one replica keeps sessions and messages in MariaDB, reached
// through a proxy. Two people chat at two messages a second each; for five seconds
// every answer from MariaDB comes 200 ms late. Acks keep arriving (later), nothing is
// lost or doubled, no connection is closed, and acks are prompt again once MariaDB is.
func TestFaultMariaDBSlow(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	cfg, err := mysql.ParseDSN(envValue(t, p.env, "PARLEY_MYSQL_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newToxicProxy(t, "mariadb", cfg.Addr)
	cfg.Addr = proxy.Addr()
	p.env = []string{"PARLEY_MYSQL_DSN=" + cfg.FormatDSN(), "PARLEY_MYSQL_MESSAGES=true"}
	dir := t.TempDir()
	p.run(t, dir, "migrate")
	srv := startServer(t, dir, p.env...)
	pr := enterPair(t, srv, srv, "slowdb").watch()

	// The scenario runs on the clock: 1.5 s of chat, 5 s with MariaDB slow, 2 s after.
	stop := make(chan struct{})
	wait := pr.talk(t, 500*time.Millisecond, stop)
	time.Sleep(1500 * time.Millisecond)
	slowFrom := time.Now()
	proxy.Add(`{"name":"slow","type":"latency","attributes":{"latency":200}}`)
	time.Sleep(5 * time.Second)
	proxy.Remove("slow")
	slowUntil := time.Now()
	time.Sleep(2 * time.Second)
	close(stop)
	annSent, bobSent := wait()
	pr.settle(t, annSent, bobSent, 30*time.Second)

	// Acks while MariaDB was slow, and after it recovered (a second of grace for the
	// backlog to clear).
	var during, after []time.Duration
	for _, side := range []struct {
		sent map[string]time.Time
		s    *screen
	}{{annSent, pr.as}, {bobSent, pr.bs}} {
		acked := side.s.ackTimes()
		for id, at := range side.sent {
			d := acked[id].Sub(at)
			switch {
			case at.After(slowFrom) && at.Before(slowUntil):
				during = append(during, d)
			case at.After(slowUntil.Add(time.Second)):
				after = append(after, d)
			}
		}
	}
	slices.Sort(during)
	slices.Sort(after)
	t.Logf("acks with MariaDB 200 ms slower: %d, p50 %s, max %s; after: %d, p50 %s, max %s",
		len(during), percentile(during, 0.5), percentile(during, 1), len(after), percentile(after, 0.5), percentile(after, 1))
	// Each message costs several MariaDB round trips, so while every answer is 200 ms
	// late a sender's acks fall behind (measured: p50 2.5 s, max 4.5 s after 5 s);
	// none may come near the 10 s after which a stalled store closes the connection.
	if worst := percentile(during, 1); worst > 8*time.Second {
		t.Errorf("an ack took %s while MariaDB answered 200 ms late; want under 8 s", worst)
	}
	if worst := percentile(after, 1); worst > 2*time.Second {
		t.Errorf("an ack took %s after MariaDB was fast again; want under 2 s", worst)
	}

	// MariaDB holds exactly what both screens show.
	total := len(annSent) + len(bobSent)
	var stored, last int
	if err := p.db.QueryRow("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM messages WHERE session_id = ?", pr.session).Scan(&stored, &last); err != nil {
		t.Fatal(err)
	}
	if stored != total || last != total {
		t.Fatalf("MariaDB holds %d messages up to seq %d, want %d", stored, last, total)
	}
}

// envValue returns the value of NAME in a list of NAME=value, failing when absent.
func envValue(t *testing.T, env []string, name string) string {
	t.Helper()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	t.Fatalf("%s is not set", name)
	return ""
}
