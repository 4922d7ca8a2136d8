// Command parley is the one-to-one live chat server: parley serve, worker, migrate,
// export, purge, bench and version. Everything happens in internal/cli so tests can run
// the same code.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	// The time zone database is compiled in (about 450 kB), so PARLEY_TZ and the zones
	// people choose work on machines and containers without /usr/share/zoneinfo.
	// Go still prefers the system's database when there is one.
	_ "time/tzdata"

	"parley/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
