// Package cli is Parley's command line: it reads configuration, wires the backends the
// configuration selects and runs the subcommands. It is the only package that imports
// the backend packages (sqlstore, dynamostore, redisbus, asynqqueue, memqueue, membus,
// fileblob, s3blob, smtpmail, outbox) to choose among them; the one other import is
// web's of outbox, whose files it lists at /dev/mail in development mode. Everything
// else sees backends through the interfaces of package chat.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Version is set at build time with -ldflags "-X parley/internal/cli.Version=…".
var Version = "dev"

// command is one subcommand of parley.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

// environment is what every subcommand gets: the process's view of the world, passed
// in so that tests run the same code as the binary.
type environment struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

func commands() []command {
	return []command{
		{"serve", "serve the chat (the default)", runServe},
		{"worker", "run background jobs and the nightly purge (with PARLEY_REDIS_URL)", runWorker},
		{"migrate", "create or update database tables (and with flags the DynamoDB table and S3 bucket)", runMigrate},
		{"export", "export, archive and email one ended chat now: parley export SESSION", runExport},
		{"purge", "delete the stored messages of archived chats: parley purge [--dry-run]", runPurge},
		{"bench", "load-test a Parley server: parley bench --rooms 100 --duration 20s", runBench},
		{"version", "print the version", runVersion},
	}
}

// Main runs the parley command with args (args[0] is the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	env := &environment{getenv: getenv, stdout: stdout, stderr: stderr}
	name, rest := "serve", args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" || name == "-h" || name == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, env, rest)
			if err == nil || errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "parley %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "parley: unknown command %q\n", name)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: parley [command] [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'parley COMMAND -h' for the flags of a command; every flag has a PARLEY_* variable.")
}

func runVersion(_ context.Context, env *environment, _ []string) error {
	fmt.Fprintln(env.stdout, "parley", Version)
	return nil
}

// newLogger builds the one slog.Logger the process uses.
func newLogger(c Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
