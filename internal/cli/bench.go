package cli

import (
	"context"

	"parley/internal/bench"
)

// runBench load-tests a server through its public protocol, or compares Parley with
// other servers (docs/BENCHMARKS.md).
func runBench(ctx context.Context, env *environment, args []string) error {
	return bench.Main(ctx, args, env.stdout, env.stderr)
}
