package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"parley/internal/bench"
)

// runBench load-tests a Parley server through its public protocol (docs/BENCHMARKS.md).
func runBench(ctx context.Context, env *environment, args []string) error {
	o, err := bench.ParseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(env.stdout, bench.Usage())
		return nil
	}
	if err != nil {
		return err
	}
	return bench.Run(ctx, o, env.stdout, env.stderr)
}
