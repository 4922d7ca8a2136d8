package web

import (
	"log/slog"
	"net/http"

	"parley/internal/chat"
)

// httpStatus maps a domain error code to the HTTP status that tells a client what to do.
func httpStatus(code string) int {
	switch code {
	case chat.EInvalid, chat.EInvalidFrame, chat.ETooLong, chat.EEmpty:
		return http.StatusBadRequest
	case chat.EUnauthorized:
		return http.StatusUnauthorized
	case chat.ENotAllowed:
		return http.StatusForbidden
	case chat.ENotFound:
		return http.StatusNotFound
	case chat.ERoomFull, chat.EChatEnded, chat.EConflict:
		return http.StatusConflict
	case chat.ERateLimited:
		return http.StatusTooManyRequests
	case chat.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError is the one place that turns an error into an HTTP response: the status
// from its code and the message fit to show. Only failures on our side are logged;
// the person's mistakes are not.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := chat.ErrorCode(err)
	s.logError(r, err)
	http.Error(w, chat.ErrorMessage(err), httpStatus(code))
}

// logError logs err when it is ours (internal or a backend being unavailable). The
// path is logged, never the query (it may hold an email) nor cookies.
func (s *Server) logError(r *http.Request, err error) {
	switch chat.ErrorCode(err) {
	case chat.EInternal, chat.EUnavailable, chat.EPermanent:
		attrs := []any{slog.String("code", chat.ErrorCode(err)), slog.Any("err", err)}
		if r != nil {
			attrs = append(attrs, slog.String("method", r.Method), slog.String("path", r.URL.Path))
		}
		s.log.Error("request failed", attrs...)
	}
}
