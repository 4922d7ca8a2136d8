package s3blob

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"parley/internal/chat"
)

// silentS3 accepts connections and never answers, like an S3 (or a proxy in front of
// it) that hangs; it closes them when the test ends.
func silentS3(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestHungS3FailsEachCall: with an S3 that never answers, an upload, a HeadObject and
// a ping each fail as unavailable once their deadline has passed, instead of holding
// the export (and its worker) until a restart.
func TestHungS3FailsEachCall(t *testing.T) {
	a, err := Open(context.Background(), Options{
		Bucket: "parley-hung", Endpoint: silentS3(t), PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
		PutTimeout:  300 * time.Millisecond, CallTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background() // no deadline of the caller's: the archive's own must end it
	for _, call := range []struct {
		name  string
		limit time.Duration
		do    func() error
	}{
		{"Put", 300 * time.Millisecond, func() error { _, err := a.Put(ctx, "k.csv", []byte("a,b\n")); return err }},
		{"Stat", 200 * time.Millisecond, func() error { _, err := a.Stat(ctx, "k.csv"); return err }},
		{"Ping", 200 * time.Millisecond, func() error { return a.Ping(ctx) }},
	} {
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- call.do() }()
		select {
		case err := <-errc:
			took := time.Since(start)
			if !chat.IsCode(err, chat.EUnavailable) {
				t.Errorf("%s against a hung S3: %v; want unavailable", call.name, err)
			}
			if took < call.limit {
				t.Errorf("%s gave up after %s, before its deadline %s", call.name, took, call.limit)
			}
			t.Logf("%s gave up after %s (deadline %s)", call.name, took.Round(time.Millisecond), call.limit)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s against a hung S3 still waiting after 10 s", call.name)
		}
	}
}
