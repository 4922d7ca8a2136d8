// Temporary: parley serve with net/http/pprof on 127.0.0.1:16060, for profiling under
// parley bench. Not committed.
package main

import (
	"context"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"parley/internal/cli"
)

func main() {
	go http.ListenAndServe("127.0.0.1:16060", nil)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Main(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr))
}
