// Package cli is Parley's command line: it reads configuration, wires the backends the
// configuration selects and runs the subcommands. It is the only package that imports
// the backend packages.
package cli

import (
	"context"
	"fmt"
	"io"
)

// Main runs the parley command with args (args[0] is the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	_ = ctx
	_ = getenv
	fmt.Fprintln(stdout, "parley: under construction")
	return 0
}
