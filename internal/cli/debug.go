package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// serveDebug serves Go's pprof profiles on addr, which must be a loopback address:
// profiles show memory contents and cost CPU, so they are never offered to the network.
// It is how the numbers in docs/BENCHMARKS.md were explained. stop closes the listener.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	if !loopback(addr) {
		return nil, fmt.Errorf("PARLEY_DEBUG_ADDR %q must be a loopback address (127.0.0.1:port)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener stopped", "err", err)
		}
	}()
	log.Info("pprof profiles served", "listen", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
