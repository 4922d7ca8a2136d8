package web

import "net/http"

// Placeholders so the route table compiles while their owners write the real handlers.
// Each owner deletes its stubs from this file when the real one lands.

func notYet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not implemented yet", http.StatusNotImplemented)
	})
}
