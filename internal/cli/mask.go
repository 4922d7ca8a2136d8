package cli

import (
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// maskDSN returns a MySQL DSN with its password hidden, for logs and errors.
func maskDSN(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "*****"
	}
	return cfg.FormatDSN()
}

// maskURL returns a URL with its password hidden, for logs and errors.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "*****")
	}
	return strings.Replace(u.String(), "%2A%2A%2A%2A%2A", "*****", 1)
}
