package testenv

import (
	"fmt"
	"net"
	"regexp"
	"runtime"
	"testing"
)

// recorder stands in for *testing.T so the skip/fail rule itself can be
// observed; like the real one, Skipf and Fatalf end the calling goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn with a recorder in its own goroutine, as the testing package does.
func run(t *testing.T, fn func(testing.TB) string) (*recorder, string) {
	r := &recorder{TB: t}
	var got string
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = fn(r)
	}()
	<-done
	return r, got
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// openAddr returns a loopback address that accepts connections until the test ends.
func openAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

func TestMissingBackend(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		value    func(t *testing.T) string
		wantSkip bool
		wantFail bool
	}{
		{"UnsetLocalSkips", "", func(*testing.T) string { return "" }, true, false},
		{"UnsetCIFalseSkips", "false", func(*testing.T) string { return "" }, true, false},
		{"UnsetCIFails", "true", func(*testing.T) string { return "" }, false, true},
		{"UnreachableLocalSkips", "", func(t *testing.T) string { return "redis://" + closedAddr(t) + "/1" }, true, false},
		{"UnreachableCIFails", "true", func(t *testing.T) string { return "redis://" + closedAddr(t) + "/1" }, false, true},
		{"ReachableOK", "true", func(t *testing.T) string { return "redis://" + openAddr(t) + "/1" }, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			want := tc.value(t)
			t.Setenv(EnvRedisURL, want)
			r, got := run(t, RedisURL)
			if r.skipped != tc.wantSkip || r.failed != tc.wantFail {
				t.Fatalf("skipped=%v failed=%v (%q), want skipped=%v failed=%v", r.skipped, r.failed, r.msg, tc.wantSkip, tc.wantFail)
			}
			if !r.skipped && !r.failed && got != want {
				t.Fatalf("RedisURL = %q, want %q", got, want)
			}
			if (r.skipped || r.failed) && !regexp.MustCompile(`make test`).MatchString(r.msg) {
				t.Fatalf("message %q does not say how to fix it", r.msg)
			}
		})
	}
}

func TestEachGetterReadsItsVariable(t *testing.T) {
	addr := openAddr(t)
	t.Setenv("CI", "true")
	t.Setenv(EnvMySQLDSN, "root@tcp("+addr+")/?parseTime=true&loc=UTC")
	t.Setenv(EnvDynamoEndpoint, "http://"+addr)
	t.Setenv(EnvS3Endpoint, "http://"+addr)
	t.Setenv(EnvS3AccessKey, "ak")
	t.Setenv(EnvS3SecretKey, "sk")
	t.Setenv(EnvS3Bucket, "")
	t.Setenv(EnvSMTPAddr, addr)
	t.Setenv(EnvMailpitURL, "http://"+addr+"/")

	tests := []struct {
		name string
		get  func(testing.TB) string
		want string
	}{
		{"MySQL", MySQLDSN, "root@tcp(" + addr + ")/?parseTime=true&loc=UTC"},
		{"Dynamo", DynamoEndpoint, "http://" + addr},
		{"S3", func(t testing.TB) string { return fmt.Sprint(S3(t)) }, fmt.Sprint(S3Env{"http://" + addr, "ak", "sk", DefaultS3Bucket})},
		{"SMTP", SMTPAddr, addr},
		{"MailpitTrimsSlash", MailpitURL, "http://" + addr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, got := run(t, tc.get)
			if r.skipped || r.failed {
				t.Fatalf("unexpected skip/fail: %s", r.msg)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestURLHostPort(t *testing.T) {
	tests := []struct {
		name, raw, want string
		wantErr         bool
	}{
		{"ExplicitPort", "http://127.0.0.1:4567", "127.0.0.1:4567", false},
		{"DefaultPort", "redis://127.0.0.1/0", "127.0.0.1:6379", false},
		{"HTTPS", "https://s3.example", "s3.example:443", false},
		{"IPv6", "http://[::1]:9100", "[::1]:9100", false},
		{"NoHost", "127.0.0.1:9100", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := urlHostPort(tc.raw, "6379")
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("urlHostPort(%q) = %q, %v; want %q, error %v", tc.raw, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(t, "parley_test"), UniqueName(t, "parley_test")
	if a == b {
		t.Fatalf("two calls gave the same name %q", a)
	}
	if !regexp.MustCompile(`^parley_test_[0-9a-f]{12}$`).MatchString(a) {
		t.Fatalf("UniqueName = %q, want parley_test_ + 12 hex digits", a)
	}
}

// FuzzURLHostPort checks that any address urlHostPort accepts is a dialable
// host:port, whatever an environment variable holds.
func FuzzURLHostPort(f *testing.F) {
	for _, seed := range []string{"http://127.0.0.1:4567", "redis://h/0", "https://[::1]", "", "::", "http://:80"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		addr, err := urlHostPort(raw, "6379")
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			t.Fatalf("urlHostPort(%q) = %q, not a host:port (%v)", raw, addr, err)
		}
	})
}
