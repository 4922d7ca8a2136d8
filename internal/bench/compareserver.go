package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	serverStartWait = 60 * time.Second
	serverStopWait  = 20 * time.Second
)

// serverEnv starts and stops the servers of a comparison.
type serverEnv struct {
	o         CompareOptions
	dir       string // scratch: data directories, configs, logs
	id        string
	stderr    io.Writer
	mysqlDSN  string // the fresh database's DSN, once made
	dropDB    func()
	cookieKey string
}

func newServerEnv(ctx context.Context, o CompareOptions, stderr io.Writer) (*serverEnv, error) {
	for _, s := range o.Servers {
		if s == ServerCentrifugo {
			if _, err := os.Stat(o.Centrifugo); err != nil {
				return nil, fmt.Errorf("centrifugo binary: %w (`make bench-compare` installs it)", err)
			}
		}
	}
	dir, err := os.MkdirTemp("", "parley-compare-")
	if err != nil {
		return nil, err
	}
	e := &serverEnv{o: o, dir: dir, id: newRunID(), stderr: stderr, cookieKey: randomHex(32)}
	for _, s := range o.Servers {
		if (s == ServerMariaDB || s == ServerReplicas) && e.mysqlDSN == "" {
			if err := e.freshDatabase(ctx); err != nil {
				e.close()
				return nil, err
			}
		}
	}
	return e, nil
}

func (e *serverEnv) close() {
	if e.dropDB != nil {
		e.dropDB()
	}
	_ = os.RemoveAll(e.dir)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freshDatabase makes an empty database beside the DSN's, migrates it with `parley
// migrate`, and arranges for it to be dropped at the end.
func (e *serverEnv) freshDatabase(ctx context.Context) error {
	cfg, err := mysql.ParseDSN(e.o.MySQLDSN)
	if err != nil {
		return fmt.Errorf("--mysql-dsn: %w", err)
	}
	name := "parley_bench_" + e.id
	cfg.DBName = ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = db.Close()
		return fmt.Errorf("create database %s: %w", name, err)
	}
	e.dropDB = func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(c, "DROP DATABASE IF EXISTS "+name); err != nil {
			fmt.Fprintf(e.stderr, "bench compare: drop database %s: %v\n", name, err)
		}
		_ = db.Close()
	}
	cfg.DBName = name
	e.mysqlDSN = cfg.FormatDSN()
	cmd := exec.CommandContext(ctx, e.o.Parley, "migrate")
	cmd.Env = append(cleanEnv("PARLEY_"), "PARLEY_MYSQL_DSN="+e.mysqlDSN, "PARLEY_MYSQL_MESSAGES=true",
		"PARLEY_DATA_DIR="+filepath.Join(e.dir, "migrate"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("parley migrate: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// cleanEnv is this process's environment without the variables starting with prefix,
// so a server runs with only the settings the comparison gives it.
func cleanEnv(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// proc is one started server process.
type proc struct {
	name string
	cmd  *exec.Cmd
	url  string
	log  string
	done chan struct{}
}

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// start runs argv with env, its output to a log file, and waits until it answers HTTP.
func (e *serverEnv) start(ctx context.Context, name, addr string, argv, env []string) (*proc, error) {
	logPath := filepath.Join(e.dir, fmt.Sprintf("%s-%s.log", name, randomHex(3)))
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, lf, lf
	cmd.SysProcAttr = childAttr() // never outlive the comparison
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, url: "http://" + addr, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = lf.Close(); close(p.done) }()
	if err := p.awaitReady(ctx); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not start: %w; its log: %s", name, err, p.tail())
	}
	return p, nil
}

// awaitReady polls until the server answers any HTTP request.
func (p *proc) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, serverStartWait)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/", nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-p.done:
			return errors.New("it exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the server: SIGTERM, then SIGKILL if it has not exited in time.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(serverStopWait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the server's log, for an error message.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(bytes.TrimSpace(b))
}

// parleyEnv is the environment of a Parley server of the comparison: trust sign-in
// and no rate limit (the closed loop sends as fast as the server answers; at the
// default 20 messages/s it would measure the limit), a fresh data directory.
func (e *serverEnv) parleyEnv(dataDir string, idle bool) []string {
	env := append(cleanEnv("PARLEY_"),
		"PARLEY_AUTH=trust", "PARLEY_RATE=1000000", "PARLEY_RATE_BURST=1000000",
		"PARLEY_DATA_DIR="+dataDir, "PARLEY_LOG_LEVEL=warn", "PARLEY_COOKIE_KEY="+e.cookieKey)
	if idle {
		env = append(env, "PARLEY_CONNS_PER_PERSON=-1")
	}
	return env
}

// centrifugoConfig is Centrifugo v6's configuration for the comparison: the memory
// engine (its default), clients connect without a token (client.insecure: every
// connection is anonymous) and may subscribe and publish to any channel without a
// namespace, no history, loopback only, logs at error level.
func centrifugoConfig(port string) string {
	return `{
  "http_server": {"address": "127.0.0.1", "port": ` + port + `},
  "log": {"level": "error"},
  "engine": {"type": "memory"},
  "client": {"insecure": true, "allowed_origins": ["*"]},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true,
    "allow_subscribe_for_anonymous": true, "allow_publish_for_anonymous": true}}
}
`
}

// run starts the server(s) for one run, measures, and stops them.
func (e *serverEnv) run(ctx context.Context, server string, rooms int, o CompareOptions) CompareRun {
	run := CompareRun{Server: server, Rooms: rooms, LoadBefore: loadAverage()}
	procs, bo, err := e.startServer(ctx, server, rooms == 0)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		run.Error = err.Error()
		return run
	}
	bo.Quiet, bo.Warmup, bo.Duration = true, o.Warmup, o.Duration
	if rooms == 0 {
		bo.Mode, bo.Conns, bo.IdleRooms = ModeIdle, o.IdleConns, 0
	} else {
		bo.Rooms = rooms
	}
	if err := bo.Validate(); err != nil {
		run.Error = err.Error()
		return run
	}
	var res *Result
	if rooms == 0 {
		res, err = runIdle(ctx, bo, io.Discard)
	} else {
		res, err = runChat(ctx, bo, bo.RunID, io.Discard)
	}
	if res != nil {
		res.Machine = describeMachine()
		res.Machine.LoadBefore = run.LoadBefore
		res.Targets = res.targets()
		run.Result = res
	}
	if err != nil {
		run.Error = err.Error()
	}
	for _, p := range procs {
		select {
		case <-p.done:
			run.Error = strings.TrimSpace(run.Error + " " + p.name + " exited during the run: " + p.tail())
		default:
		}
	}
	return run
}

// startServer starts what server names and returns its processes and the bench
// options that reach it.
func (e *serverEnv) startServer(ctx context.Context, server string, idle bool) ([]*proc, Options, error) {
	bo := DefaultOptions()
	var procs []*proc
	addr, err := freeAddr()
	if err != nil {
		return nil, bo, err
	}
	dataDir, err := os.MkdirTemp(e.dir, server+"-")
	if err != nil {
		return nil, bo, err
	}
	var p *proc
	switch server {
	case ServerParley:
		p, err = e.start(ctx, server, addr, []string{e.o.Parley, "serve", "--addr", addr}, e.parleyEnv(dataDir, idle))
	case ServerBase:
		p, err = e.start(ctx, server, addr, []string{e.o.Base, "serve", "--addr", addr}, e.parleyEnv(dataDir, idle))
	case ServerHub:
		bo.Proto = ProtoHub
		p, err = e.start(ctx, server, addr, []string{e.o.Parley, "bench", "hub", "--addr", addr}, cleanEnv("PARLEY_"))
	case ServerCentrifugo:
		bo.Proto = ProtoCentrifugo
		_, port, _ := net.SplitHostPort(addr)
		cfg := filepath.Join(dataDir, "config.json")
		if err = os.WriteFile(cfg, []byte(centrifugoConfig(port)), 0o644); err == nil {
			p, err = e.start(ctx, server, addr, []string{e.o.Centrifugo, "--config", cfg}, cleanEnv("CENTRIFUGO_"))
		}
	case ServerMariaDB:
		env := append(e.parleyEnv(dataDir, idle), "PARLEY_MYSQL_DSN="+e.mysqlDSN, "PARLEY_MYSQL_MESSAGES=true")
		p, err = e.start(ctx, server, addr, []string{e.o.Parley, "serve", "--addr", addr}, env)
	case ServerReplicas:
		shared := []string{"PARLEY_MYSQL_DSN=" + e.mysqlDSN, "PARLEY_MYSQL_MESSAGES=true",
			"PARLEY_REDIS_URL=" + e.o.RedisURL, "PARLEY_REDIS_PREFIX=parley-bench-" + e.id}
		env := append(e.parleyEnv(dataDir, idle), shared...)
		if p, err = e.start(ctx, server+"-1", addr, []string{e.o.Parley, "serve", "--addr", addr}, env); err != nil {
			break
		}
		procs = append(procs, p)
		var addr2, dataDir2 string
		if addr2, err = freeAddr(); err != nil {
			break
		}
		if dataDir2, err = os.MkdirTemp(e.dir, server+"-"); err != nil {
			break
		}
		env2 := append(e.parleyEnv(dataDir2, idle), shared...)
		p, err = e.start(ctx, server+"-2", addr2, []string{e.o.Parley, "serve", "--addr", addr2}, env2)
		bo.PeerURL = "http://" + addr2
	default:
		err = fmt.Errorf("unknown server %q", server)
	}
	if p != nil {
		procs = append(procs, p)
	}
	if err != nil {
		return procs, bo, err
	}
	bo.URL = procs[0].url
	for _, p := range procs {
		bo.ServerPIDs = append(bo.ServerPIDs, p.cmd.Process.Pid)
	}
	return procs, bo, nil
}
