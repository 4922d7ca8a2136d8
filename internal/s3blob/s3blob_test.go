package s3blob

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"parley/internal/chat"
	"parley/internal/testenv"
)

// openBucket opens an Archive on a fresh bucket (parley-test-<random>) of the S3
// stand-in, with the given key prefix, and removes the bucket when the test ends.
// Parley talks to 127.0.0.1 and signs links for localhost, so the two hosts differ.
func openBucket(t *testing.T, prefix string) *Archive {
	t.Helper()
	env := testenv.S3(t)
	u, err := url.Parse(env.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	public := *u
	public.Host = "localhost:" + u.Port()
	var b [6]byte
	_, _ = rand.Read(b[:])
	a, err := Open(context.Background(), Options{
		Bucket: "parley-test-" + hex.EncodeToString(b[:]), Prefix: prefix,
		Endpoint: env.Endpoint, PublicEndpoint: public.String(), PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CreateBucket(context.Background()); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	t.Cleanup(func() { removeBucket(t, a) })
	return a
}

// removeBucket deletes every object of the test bucket, then the bucket.
func removeBucket(t *testing.T, a *Archive) {
	ctx := context.Background()
	list, err := a.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &a.opts.Bucket})
	if err != nil {
		t.Errorf("listing test bucket: %v", err)
		return
	}
	for _, o := range list.Contents {
		if _, err := a.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &a.opts.Bucket, Key: o.Key}); err != nil {
			t.Errorf("deleting %s: %v", aws.ToString(o.Key), err)
		}
	}
	if _, err := a.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &a.opts.Bucket}); err != nil {
		t.Errorf("deleting test bucket: %v", err)
	}
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

const csvBody = "seq,createdDatetime,fromEmail,toEmail,message\n1,2026-11-27T13:00:00.000000Z,a@example.com,b@example.com,\"héllo, ✓\"\n"

func TestPutStatOpen(t *testing.T) {
	a := openBucket(t, "parley/")
	ctx := context.Background()
	key := chat.ArchiveKey(chat.NewSessionID())
	for _, body := range []string{csvBody, csvBody + "2,2026-11-27T13:00:01.000000Z,b@example.com,a@example.com,bye\n"} {
		obj, err := a.Put(ctx, key, []byte(body))
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		want := chat.ArchiveObject{Key: key, Size: int64(len(body)), SHA256: hexSHA256([]byte(body))}
		if obj != want {
			t.Fatalf("Put = %+v; want %+v", obj, want)
		}
		if st, err := a.Stat(ctx, key); err != nil || st != want {
			t.Fatalf("Stat = %+v, %v; want %+v", st, err, want)
		}
		rc, err := a.Open(ctx, key)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != body {
			t.Fatalf("Open read %q, %v; want %q", got, err, body)
		}
	}
	head, err := a.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: &a.opts.Bucket, Key: aws.String("parley/" + key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatalf("object is not under the prefix: %v", err)
	}
	if ct := aws.ToString(head.ContentType); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type = %q", ct)
	}
	if head.Metadata["sha256"] == "" || aws.ToString(head.ChecksumSHA256) == "" {
		t.Errorf("S3 kept no SHA-256: metadata %v, checksum %q", head.Metadata, aws.ToString(head.ChecksumSHA256))
	}
}

func TestMissingObject(t *testing.T) {
	a := openBucket(t, "")
	ctx := context.Background()
	key := chat.ArchiveKey(chat.NewSessionID())
	if _, err := a.Stat(ctx, key); !chat.IsCode(err, chat.ENotFound) {
		t.Errorf("Stat of a missing object = %v; want %s", err, chat.ENotFound)
	}
	if _, err := a.Open(ctx, key); !chat.IsCode(err, chat.ENotFound) {
		t.Errorf("Open of a missing object = %v; want %s", err, chat.ENotFound)
	}
}

func TestPingAndCreateBucket(t *testing.T) {
	a := openBucket(t, "")
	ctx := context.Background()
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := a.CreateBucket(ctx); err != nil {
		t.Fatalf("second CreateBucket: %v", err)
	}
	other := *a
	other.opts.Bucket = a.opts.Bucket + "-missing"
	if err := other.Ping(ctx); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Ping of a missing bucket = %v; want %s", err, chat.EUnavailable)
	}
}

// TestPresignedURL downloads through a presigned link with plain net/http, and checks
// that MinIO refuses it (403, as AWS does) once anything signed is changed.
func TestPresignedURL(t *testing.T) {
	a := openBucket(t, "p/")
	ctx := context.Background()
	key := chat.ArchiveKey(chat.NewSessionID())
	if _, err := a.Put(ctx, key, []byte(csvBody)); err != nil {
		t.Fatal(err)
	}
	link, err := a.URL(ctx, key, "chat-lobby-2026-11-27.csv", 0)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(link)
	if u.Hostname() != "localhost" || u.Query().Get("X-Amz-Expires") != "300" {
		t.Fatalf("link is not signed for the public endpoint with the default TTL: host %s, expires %s", u.Host, u.Query().Get("X-Amz-Expires"))
	}
	resp := get(t, link)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != csvBody {
		t.Fatalf("GET presigned = %s %q", resp.Status, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename=chat-lobby-2026-11-27.csv` {
		t.Errorf("Content-Disposition = %q", cd)
	}

	nonASCII, err := a.URL(ctx, key, "chat-café.csv", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp = get(t, nonASCII)
	resp.Body.Close()
	if cd := resp.Header.Get("Content-Disposition"); resp.StatusCode != http.StatusOK || !strings.Contains(cd, "filename*=utf-8''chat-caf%C3%A9.csv") {
		t.Errorf("non-ASCII filename: %s, Content-Disposition %q", resp.Status, cd)
	}

	tests := []struct {
		name   string
		change func(u *url.URL)
	}{
		{"HostChanged", func(u *url.URL) { u.Host = "127.0.0.1:" + u.Port() }},
		{"SignatureChanged", func(u *url.URL) { setQuery(u, "X-Amz-Signature", strings.Repeat("0", 64)) }},
		{"ExpiresChanged", func(u *url.URL) { setQuery(u, "X-Amz-Expires", "604800") }},
		{"OtherKey", func(u *url.URL) { u.Path = strings.Replace(u.Path, ".csv", "x.csv", 1) }},
		{"DispositionChanged", func(u *url.URL) { setQuery(u, "response-content-disposition", "inline") }},
		{"Unsigned", func(u *url.URL) { u.RawQuery = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad, _ := url.Parse(link)
			tc.change(bad)
			resp := get(t, bad.String())
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("GET of a %s link = %s; want 403", tc.name, resp.Status)
			}
		})
	}
}

// TestPresignedURLExpires waits (polling, bounded) for a 1-second link to be refused.
func TestPresignedURLExpires(t *testing.T) {
	a := openBucket(t, "")
	ctx := context.Background()
	key := chat.ArchiveKey(chat.NewSessionID())
	if _, err := a.Put(ctx, key, []byte(csvBody)); err != nil {
		t.Fatal(err)
	}
	link, err := a.URL(ctx, key, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp := get(t, link)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden {
			t.Fatalf("GET of an expiring link = %s", resp.Status)
		}
		return resp.StatusCode == http.StatusForbidden
	}, "the link to expire (403)")
}

func setQuery(u *url.URL, name, value string) {
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
}

func get(t *testing.T, link string) *http.Response {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	return resp
}

// TestObjectSHA256 covers how Stat reads a checksum from HeadObject answers that
// MinIO does not produce: no checksum, a multipart one, and a disagreement.
func TestObjectSHA256(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	hexSum := hex.EncodeToString(sum[:])
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	tests := []struct {
		name    string
		out     s3.HeadObjectOutput
		want    string
		wantErr bool
	}{
		{"ChecksumAndMetadata", s3.HeadObjectOutput{ChecksumSHA256: &b64, Metadata: map[string]string{"sha256": hexSum}}, hexSum, false},
		{"ChecksumOnly", s3.HeadObjectOutput{ChecksumSHA256: &b64}, hexSum, false},
		{"MetadataOnly", s3.HeadObjectOutput{Metadata: map[string]string{"sha256": hexSum}}, hexSum, false},
		{"MultipartChecksum", s3.HeadObjectOutput{ChecksumSHA256: aws.String(b64 + "-3"), Metadata: map[string]string{"sha256": hexSum}}, hexSum, false},
		{"Disagree", s3.HeadObjectOutput{ChecksumSHA256: &b64, Metadata: map[string]string{"sha256": strings.Repeat("0", 64)}}, "", true},
		{"Neither", s3.HeadObjectOutput{}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := objectSHA256(&tc.out)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("objectSHA256 = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
