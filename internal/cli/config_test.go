package cli

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{"Defaults", nil, nil, func(t *testing.T, c Config) {
			if c.Addr != "127.0.0.1:8080" || c.PublicURL != "http://127.0.0.1:8080" || c.DataDir != "./parley-data" || c.PurgeSchedule != "59 23 * * *" || c.TZ != "UTC" {
				t.Fatalf("defaults: %+v", c)
			}
			if c.BodyTimeout != 30*time.Second || c.MaxConns != 16384 {
				t.Fatalf("body timeout %v, max conns %d; want 30s and 16384", c.BodyTimeout, c.MaxConns)
			}
			if c.S3PutTimeout != 60*time.Second || c.S3CallTimeout != 10*time.Second {
				t.Fatalf("S3 timeouts %v, %v; want 60s and 10s", c.S3PutTimeout, c.S3CallTimeout)
			}
		}, ""},
		{"EnvThenFlagWins", map[string]string{"PARLEY_ADDR": "127.0.0.1:9000", "PARLEY_MAX_MESSAGE_CHARS": "100"}, []string{"--addr", "127.0.0.1:9001"}, func(t *testing.T, c Config) {
			if c.Addr != "127.0.0.1:9001" || c.MaxText != 100 || c.PublicURL != "http://127.0.0.1:9001" {
				t.Fatalf("got addr %s max %d public %s", c.Addr, c.MaxText, c.PublicURL)
			}
		}, ""},
		{"ListsAndDurations", map[string]string{"PARLEY_ADMIN_EMAILS": " Ops@Example.org , b@example.org", "PARLEY_IDLE_TIMEOUT": "90s", "PARLEY_S3_PATH_STYLE": "true"}, nil, func(t *testing.T, c Config) {
			if len(c.AdminEmails) != 2 || c.AdminEmails[0] != "ops@example.org" || c.IdleTimeout != 90*time.Second || !c.S3PathStyle {
				t.Fatalf("got %+v", c)
			}
		}, ""},
		{"ErrBadNumber", map[string]string{"PARLEY_RATE": "fast"}, nil, nil, "PARLEY_RATE"},
		{"ErrBadAuth", map[string]string{"PARLEY_AUTH": "none"}, nil, nil, "PARLEY_AUTH"},
		{"ErrBadTZ", map[string]string{"PARLEY_TZ": "Mars/Olympus"}, nil, nil, "PARLEY_TZ"},
		{"ErrBadPublicURL", map[string]string{"PARLEY_PUBLIC_URL": "chat.example.org"}, nil, nil, "PARLEY_PUBLIC_URL"},
		{"ErrBadAdmin", map[string]string{"PARLEY_ADMIN_EMAILS": "not-an-email"}, nil, nil, "PARLEY_ADMIN_EMAILS"},
		{"ErrBadTrustedProxy", map[string]string{"PARLEY_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.0/33"}, nil, nil, "10.0.0.0/33"},
		{"TrustedProxies", map[string]string{"PARLEY_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16, ::1"}, nil, func(t *testing.T, c Config) {
			if len(c.Proxies) != 3 {
				t.Fatalf("proxies %v", c.Proxies)
			}
		}, ""},
		{"ErrZeroMaxConns", map[string]string{"PARLEY_MAX_CONNS": "0"}, nil, nil, "PARLEY_MAX_CONNS"},
		{"ErrBadBodyTimeout", map[string]string{"PARLEY_BODY_TIMEOUT": "-1s"}, nil, nil, "PARLEY_BODY_TIMEOUT"},
		{"S3Timeouts", map[string]string{"PARLEY_S3_PUT_TIMEOUT": "3m", "PARLEY_S3_CALL_TIMEOUT": "20s"}, nil, func(t *testing.T, c Config) {
			o := c.s3Options(nil)
			if o.PutTimeout != 3*time.Minute || o.CallTimeout != 20*time.Second {
				t.Fatalf("S3 options carry put %v, call %v; want 3m and 20s", o.PutTimeout, o.CallTimeout)
			}
		}, ""},
		{"ErrZeroS3Timeout", map[string]string{"PARLEY_S3_CALL_TIMEOUT": "0s"}, nil, nil, "PARLEY_S3_CALL_TIMEOUT"},
		{"ErrUnknownFlag", nil, []string{"--no-such-flag"}, nil, "no-such-flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := loadConfig("serve", tc.args, env(tc.env), &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestMaskedHidesSecrets(t *testing.T) {
	c, _, err := loadConfig("serve", nil, env(map[string]string{
		"PARLEY_MYSQL_DSN":  "parley:hunter2@tcp(db:3306)/parley",
		"PARLEY_SMTP_URL":   "smtp://u:sesame@mail:587",
		"PARLEY_REDIS_URL":  "redis://:opensesame@redis:6379/0",
		"PARLEY_COOKIE_KEY": strings.Repeat("ab", 32),
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	printed := fmt.Sprint(c.Masked()...)
	for _, secret := range []string{"hunter2", "sesame", "opensesame", strings.Repeat("ab", 32)} {
		if strings.Contains(printed, secret) {
			t.Fatalf("masked config shows %q: %s", secret, printed)
		}
	}
	if got := maskDSN(c.MySQLDSN); strings.Contains(got, "hunter2") || !strings.Contains(got, "db:3306") {
		t.Fatalf("maskDSN = %q", got)
	}
	if got := maskURL(c.SMTPURL); strings.Contains(got, "sesame") || !strings.Contains(got, "mail:587") {
		t.Fatalf("maskURL = %q", got)
	}
}

// TestCookieKeyOncePerDataDir checks that replicas starting together on one data
// folder all end up with the same generated key, and that it survives a restart.
func TestCookieKeyOncePerDataDir(t *testing.T) {
	c := Config{DataDir: t.TempDir()}
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := cookieKey(c)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	again, err := cookieKey(c)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if len(k) != 32 || string(k) != string(again) {
			t.Fatalf("process %d got a different key", i)
		}
	}
}

// TestWebLimitsPerIPOffOnlyForALocalDevServer checks the per-client-IP sign-in limits
// are lifted only where every client is this machine and no email leaves it: a
// development server on a loopback address with no proxy in front.
func TestWebLimitsPerIPOffOnlyForALocalDevServer(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		off    bool
	}{
		{"LocalDev", func(*Config) {}, true},
		{"RealMail", func(c *Config) { c.SMTPURL = "smtp://mail.example.org:587" }, false},
		{"DevOff", func(c *Config) { c.Dev = "false" }, false},
		{"PublicAddress", func(c *Config) { c.Addr = "0.0.0.0:8080" }, false},
		{"BehindProxy", func(c *Config) { c.Proxies = []string{"127.0.0.1"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults()
			tt.change(&c)
			l := c.webLimits()
			if off := l.SignInsPerIP < 0 && l.JoinsPerMinute < 0; off != tt.off {
				t.Fatalf("per-IP limits off = %v (%+v), want %v", off, l, tt.off)
			}
			if l.SignInsPerEmail != c.SignInsPerEmail || l.ConnsPerPerson != c.ConnsPerPerson {
				t.Fatalf("per-address or per-person limits changed: %+v", l)
			}
		})
	}
}
