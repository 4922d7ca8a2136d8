package web

import (
	"net/http/httptest"
	"testing"
)

// newPagesTestServer starts Parley's handler on a local test server.
func newPagesTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := NewServer(Deps{Config: Config{PublicURL: "http://127.0.0.1"}})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}
