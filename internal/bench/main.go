package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"parley/internal/bench/barehub"
)

// Main runs `parley bench` with the arguments after it: a chat or idle run (Run), or
// one of the words compare (Compare), hub (the bare hub, as a server of its own) or
// plot (an SVG of results).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "compare":
			o, err := parseCompare(args[1:])
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, compareUsage())
				return nil
			}
			if err != nil {
				return err
			}
			return Compare(ctx, o, stdout, stderr)
		case "hub":
			return serveHub(ctx, args[1:], stdout)
		case "plot":
			return plotMain(args[1:], stdout)
		}
	}
	o, err := ParseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, Usage())
		return nil
	}
	if err != nil {
		return err
	}
	return Run(ctx, o, stdout, stderr)
}

// serveHub serves the bare hub (internal/bench/barehub) on a loopback address until
// ctx ends: the floor `parley bench compare` measures Parley against.
func serveHub(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("parley bench hub", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "loopback address to serve the bare hub on")
	fs.SetOutput(stdout)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--addr %s: the bare hub has no access control, so it serves on loopback only", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	return barehub.Serve(ctx, ln)
}
