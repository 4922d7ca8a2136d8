package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// LockCluster keeps other tests' failovers of the test Redis Cluster away until the
// test ends, so one test's expectations about which master serves what hold while it
// checks them. Tests run in several processes (one per package), hence a file lock.
// ClusterFailover needs it held.
func LockCluster(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "parley-test-redis-cluster.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := lockExclusive(f); err != nil {
		f.Close()
		t.Fatalf("locking the test Redis Cluster: %v", err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// ClusterFailover makes the replica of the master serving key take over (CLUSTER
// FAILOVER, as an operator does before maintenance), waits until the old master
// follows it, and returns the old master's address.
func ClusterFailover(t testing.TB, admin *redis.ClusterClient, key string) string {
	t.Helper()
	ctx := context.Background()
	master, err := admin.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := master.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	var replica string
	Eventually(t, 10*time.Second, func() bool {
		lines, err := master.Do(ctx, "CLUSTER", "REPLICAS", id).StringSlice()
		if err != nil || len(lines) == 0 {
			return false
		}
		f := strings.Fields(lines[0]) // <id> <ip:port@cport> ...
		replica, _, _ = strings.Cut(f[1], "@")
		info, err := master.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "state=online")
	}, "the master's replica to be in sync")
	rc := redis.NewClient(&redis.Options{Addr: replica})
	defer rc.Close()
	// A manual failover gives up when the master does not answer in time (say, busy
	// resyncing after an earlier one): ask again. Done when both agree: the replica
	// is master, the old master its replica.
	port := replica[strings.LastIndexByte(replica, ':')+1:]
	for try := 0; try < 4; try++ {
		if err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
			t.Fatalf("CLUSTER FAILOVER on %s: %v", replica, err)
		}
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			newRole, err1 := rc.Do(ctx, "ROLE").Slice()
			oldRole, err2 := master.Do(ctx, "ROLE").Slice()
			if err1 == nil && err2 == nil && len(newRole) > 0 && newRole[0] == "master" &&
				len(oldRole) > 2 && oldRole[0] == "slave" && fmt.Sprint(oldRole[2]) == port {
				t.Logf("failover: %s took over from %s", replica, master.Options().Addr)
				return master.Options().Addr
			}
		}
	}
	t.Fatalf("%s did not take over from %s after four CLUSTER FAILOVERs", replica, master.Options().Addr)
	return ""
}
