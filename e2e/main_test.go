// Package e2e runs Parley as its users and operators do: the parley binary built from
// this repository, started as real processes, spoken to over real HTTP and WebSockets.
package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"parley/internal/testenv"
)

// binary is the parley binary built once for the whole test run.
var binary string

func TestMain(m *testing.M) {
	var remove func()
	var err error
	binary, remove, err = testenv.BuildParley("../cmd/parley")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	remove()
	os.Exit(code)
}

// server is one running parley process.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	URL  string // http://127.0.0.1:PORT
	Addr string
	env  []string
	logs *syncBuffer
	done chan struct{}
	err  error // the process's exit, once done is closed
}

// syncBuffer collects a process's output safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs `parley serve` with PARLEY_DATA_DIR=dataDir, PARLEY_AUTH=trust and
// the given extra variables ("NAME=value"), and waits until /healthz answers.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	return startProcess(t, "serve", freeAddr(t), dataDir, extra...)
}

func startProcess(t *testing.T, command, addr, dataDir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, Addr: addr, URL: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	s.env = append(cleanEnv(), "PARLEY_ADDR="+addr, "PARLEY_DATA_DIR="+dataDir, "PARLEY_AUTH=trust")
	s.env = append(s.env, extra...)
	s.cmd = exec.Command(binary, command)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("output of parley %s on %s:\n%s", command, addr, s.logs)
		}
	})
	if command == "serve" {
		s.waitHealthy()
	}
	return s
}

// cleanEnv is this process's environment without PARLEY_* settings, so a developer's
// shell (or stack.env) does not change what a test runs.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *server) waitHealthy() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("parley exited before it was healthy: %v\n%s", s.err, s.logs)
		default:
		}
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("parley did not become healthy in 30 s\n%s", s.logs)
}

// Kill ends the process with SIGKILL (a crash) and waits for it.
func (s *server) Kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	<-s.done
}

// Stop ends the process with SIGTERM (a graceful shutdown) and waits for it.
func (s *server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.t.Errorf("parley did not stop within 20 s of SIGTERM\n%s", s.logs)
		s.Kill()
	}
}

// WaitExit waits for the process to end by itself.
func (s *server) WaitExit(timeout time.Duration) error {
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		s.t.Fatalf("parley did not exit within %s\n%s", timeout, s.logs)
		return nil
	}
}
