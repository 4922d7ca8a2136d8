package e2e

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/go-sql-driver/mysql"

	"parley/internal/testenv"
)

// production is a set of production backends for one test: a fresh MariaDB database,
// DynamoDB table, S3 prefix and Mailpit, with the PARLEY_* variables that select them.
type production struct {
	env      []string
	db       *sql.DB
	table    string
	dynamo   *dynamodb.Client
	mailpit  string
	s3       testenv.S3Env
	s3prefix string
}

func newProduction(t *testing.T) *production {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	dynamoURL := testenv.DynamoEndpoint(t)
	s3 := testenv.S3(t)
	smtp := testenv.SMTPAddr(t)
	p := &production{mailpit: testenv.MailpitURL(t), s3: s3, table: testenv.UniqueName(t, "message"), s3prefix: testenv.UniqueName(t, "e2e") + "/"}

	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	dbName := testenv.UniqueName(t, "parley_e2e")
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + dbName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE " + dbName); admin.Close() })
	cfg.DBName, cfg.ParseTime, cfg.Loc = dbName, true, time.UTC
	p.db, err = sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.db.Close() })

	p.dynamo = dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(dynamoURL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	t.Cleanup(func() {
		p.dynamo.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(p.table)})
	})
	p.env = []string{
		"PARLEY_MYSQL_DSN=" + cfg.FormatDSN(),
		"PARLEY_DYNAMODB_ENDPOINT=" + dynamoURL,
		"PARLEY_DYNAMODB_TABLE=" + p.table,
		"PARLEY_AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + s3.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s3.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"PARLEY_S3_BUCKET=" + s3.Bucket,
		"PARLEY_S3_PREFIX=" + p.s3prefix,
		"PARLEY_S3_ENDPOINT=" + s3.Endpoint,
		"PARLEY_S3_PUBLIC_ENDPOINT=" + s3.Endpoint,
		"PARLEY_S3_PATH_STYLE=true",
		"PARLEY_SMTP_URL=smtp://" + smtp + "?tls=none",
		"PARLEY_MAIL_FROM=Parley <parley@example.org>",
	}
	return p
}

// run runs a parley command with the production variables and returns its output.
func (p *production) run(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(cleanEnv(), "PARLEY_DATA_DIR="+dataDir), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("parley %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestProductionBackends runs a whole chat on MariaDB + DynamoDB (dynalite) + S3
// (MinIO) + SMTP (Mailpit) and checks each backend holds what it must.
func TestProductionBackends(t *testing.T) {
	p := newProduction(t)
	dir := t.TempDir()
	p.run(t, dir, "migrate", "--create-table", "--create-bucket")
	srv := startServer(t, dir, p.env...)

	room := "prod"
	ann := join(t, srv.URL, room, testenv.UniqueName(t, "ann")+"@example.org")
	bob := join(t, srv.URL, room, testenv.UniqueName(t, "bob")+"@example.org")
	a, w := ann.mustDial("")
	b, _ := bob.mustDial("")
	a.say("a-1", "hello from MariaDB land")
	b.say("b-1", "=1+1, \"quoted\"\nnew line")
	checkSeqs(t, "ann", a.messagesUntil(2), 1, 2)
	if n := p.countItems(t, w.Session); n < 2 {
		t.Fatalf("DynamoDB holds %d items of the session, want the 2 messages", n)
	}
	a.send(map[string]string{"type": "end"})
	if f := b.next("ended"); f.By != ann.email {
		t.Fatalf("ended by %q", f.By)
	}
	a.next("ended")
	if f := a.next("transcript"); f.URL != "/transcripts/"+w.Session {
		t.Fatalf("transcript frame url %q", f.URL)
	}

	// MariaDB: the session is completed with the archive recorded.
	var status, key, sum string
	var size int64
	err := p.db.QueryRow("SELECT status, archive_key, archive_size, archive_sha256 FROM sessions WHERE id = ?", w.Session).Scan(&status, &key, &size, &sum)
	if err != nil {
		t.Fatalf("reading the session row from MariaDB: %v", err)
	}
	if status != "completed" || key == "" || size == 0 || len(sum) != 64 {
		t.Fatalf("session row: status %q key %q size %d sha256 %q", status, key, size, sum)
	}

	// The link redirects to a presigned URL that plain HTTP downloads; its SHA-256 is
	// the recorded one.
	body := ann.download(t, "/transcripts/"+w.Session, p.s3.Endpoint)
	if got := sha256Hex(body); got != sum || int64(len(body)) != size {
		t.Fatalf("downloaded transcript sha256 %s size %d, recorded %s size %d", got, len(body), sum, size)
	}
	if !strings.Contains(string(body), "hello from MariaDB land") || !strings.Contains(string(body), "'=1+1") {
		t.Fatalf("transcript lacks the messages (or the formula guard):\n%s", body)
	}

	// Mailpit: exactly one email per person, carrying the link.
	link := srv.URL + "/transcripts/" + w.Session
	for _, who := range []string{ann.email, bob.email} {
		msgs := p.mailTo(t, who)
		if len(msgs) != 1 {
			t.Fatalf("Mailpit holds %d emails to %s, want 1", len(msgs), who)
		}
		if !strings.Contains(msgs[0], link) {
			t.Fatalf("email to %s lacks the link %s", who, link)
		}
	}

	// parley purge deletes the DynamoDB items; the transcript still downloads.
	out := p.run(t, dir, "purge")
	if !strings.Contains(out, "purged 1") {
		t.Fatalf("parley purge said:\n%s", out)
	}
	if n := p.countItems(t, w.Session); n != 0 {
		t.Fatalf("DynamoDB still holds %d items of the purged session", n)
	}
	if again := ann.download(t, "/transcripts/"+w.Session, p.s3.Endpoint); sha256Hex(again) != sum {
		t.Fatal("transcript changed after the purge")
	}

	// Nothing secret reached the logs: not the AWS secret key, not a presigned link,
	// not a cookie, not a message.
	logs := srv.logs.String()
	for what, secret := range map[string]string{
		"the AWS secret key": p.s3.SecretKey, "a cookie": strings.SplitN(ann.cookie, "=", 2)[1], "message text": "hello from MariaDB land",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the server logs contain %s", what)
		}
	}
	if presigned.MatchString(logs) {
		t.Error("the server logs contain a presigned URL")
	}
}

// countItems counts the DynamoDB items of a session (messages and any guards).
func (p *production) countItems(t *testing.T, session string) int32 {
	t.Helper()
	out, err := p.dynamo.Query(context.Background(), &dynamodb.QueryInput{
		TableName:                 aws.String(p.table),
		KeyConditionExpression:    aws.String("sessionId = :s"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: session}},
		Select:                    types.SelectCount,
	})
	if err != nil {
		t.Fatalf("query DynamoDB: %v", err)
	}
	return out.Count
}

// mailTo returns the text bodies of the emails Mailpit holds for an address.
func (p *production) mailTo(t *testing.T, addr string) []string {
	t.Helper()
	var list struct {
		Messages []struct{ ID string } `json:"messages"`
	}
	getJSON(t, p.mailpit+"/api/v1/search?query="+url.QueryEscape("to:"+addr), &list)
	var bodies []string
	for _, m := range list.Messages {
		var msg struct{ Text, HTML string }
		getJSON(t, p.mailpit+"/api/v1/message/"+m.ID, &msg)
		bodies = append(bodies, msg.Text)
	}
	return bodies
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// download follows /transcripts/{id}: it must redirect to a presigned link on the S3
// endpoint, which plain HTTP (no cookie, no credentials) then downloads.
func (p *person) download(t *testing.T, path, s3Endpoint string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", p.base+path, nil)
	req.Header.Set("Cookie", p.cookie)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s3Endpoint) {
		t.Fatalf("GET %s: %d to %q, want a redirect to %s", path, resp.StatusCode, loc, s3Endpoint)
	}
	got, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	body, _ := io.ReadAll(got.Body)
	if got.StatusCode != http.StatusOK {
		t.Fatalf("presigned download: %s\n%s", got.Status, body)
	}
	return body
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
