package cli

import (
	"context"

	"parley/internal/bench"
)

// runBench load-tests a Parley server through its public protocol (docs/BENCHMARKS.md).
func runBench(ctx context.Context, env *environment, args []string) error {
	o, err := bench.ParseFlags(args)
	if err != nil {
		return err
	}
	return bench.Run(ctx, o, env.stdout, env.stderr)
}
