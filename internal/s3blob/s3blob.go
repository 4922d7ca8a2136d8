// Package s3blob keeps transcripts in Amazon S3 (or an S3-compatible store such as
// MinIO), so every replica and worker shares one archive. It
// implements chat.Archive.
//
// Objects are private. A person downloads a transcript through Parley's
// /transcripts/{session}, which checks who asks and then redirects to a presigned GET
// valid for a few minutes. The presigned URL is signed for PublicEndpoint, the host the
// person's browser reaches: the host is part of the SigV4 signature, so a URL signed
// for an internal endpoint would be refused.
//
// Put confirms what S3 stored before it returns: S3 checks the SHA-256 sent with the
// upload (x-amz-checksum-sha256), and HeadObject then confirms size and checksum, so a
// session is only marked archived (and its messages later purged) when the transcript
// is really there, whole.
//
// IAM: s3:PutObject and s3:GetObject on the prefix, s3:ListBucket on the bucket (without
// it S3 answers 403 instead of 404 for a missing object, and Stat cannot tell "not
// there" from "not allowed"), s3:CreateBucket only for `parley migrate`.
package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"parley/internal/chat"
)

var _ chat.Archive = (*Archive)(nil)

// Defaults of Options.
const (
	DefaultRegion     = "us-east-1"
	DefaultPresignTTL = 5 * time.Minute
	// DefaultPutTimeout bounds one upload (and reading one object back, Open); a
	// transcript is at most a few megabytes.
	DefaultPutTimeout = 60 * time.Second
	// DefaultCallTimeout bounds every other call: HeadObject, HeadBucket, presigning.
	DefaultCallTimeout = 10 * time.Second
)

// metaSHA256 is the user metadata key (x-amz-meta-sha256) holding the object's hex
// SHA-256, so Stat can answer even where S3's own checksum is not returned.
const metaSHA256 = "sha256"

// contentType of every transcript: a CSV file.
const contentType = "text/csv; charset=utf-8"

// Options configure an Archive. Credentials come from the AWS SDK's default chain
// unless Credentials is set.
type Options struct {
	Bucket string
	Prefix string // prepended as is to every key, e.g. "parley/"
	Region string // default us-east-1
	// Endpoint overrides the S3 endpoint Parley talks to (e.g. http://127.0.0.1:9000
	// for MinIO); empty means AWS.
	Endpoint string
	// PublicEndpoint is the endpoint people's browsers reach, used to sign download
	// links; empty means Endpoint.
	PublicEndpoint string
	PathStyle      bool          // bucket in the path (MinIO), not in the host name
	PresignTTL     time.Duration // default lifetime of download links, default 5 minutes
	// PutTimeout and CallTimeout bound each S3 call (DefaultPutTimeout,
	// DefaultCallTimeout): an S3 that keeps the connection open without answering
	// fails the call, so the export fails and is retried instead of holding a worker.
	PutTimeout  time.Duration
	CallTimeout time.Duration
	// Credentials overrides the SDK's default chain (tests, stand-ins); nil keeps it.
	Credentials aws.CredentialsProvider
	Logger      *slog.Logger // nil discards
}

// Archive is a chat.Archive on one S3 bucket. It is safe for concurrent use.
type Archive struct {
	client  *s3.Client
	presign *s3.PresignClient
	opts    Options
	log     *slog.Logger
}

// Open builds the S3 clients; it does not contact S3 (Ping does).
func Open(ctx context.Context, opts Options) (*Archive, error) {
	if opts.Bucket == "" {
		return nil, chat.Errorf(chat.EInvalid, "S3 bucket name is missing")
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.PresignTTL <= 0 {
		opts.PresignTTL = DefaultPresignTTL
	}
	if opts.PublicEndpoint == "" {
		opts.PublicEndpoint = opts.Endpoint
	}
	chat.SetDefault(&opts.PutTimeout, DefaultPutTimeout)
	chat.SetDefault(&opts.CallTimeout, DefaultCallTimeout)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	loaders := []func(*config.LoadOptions) error{config.WithRegion(opts.Region)}
	if opts.Credentials != nil {
		loaders = append(loaders, config.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "loading AWS configuration for S3")
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = opts.PathStyle
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
	})
	presign := s3.NewPresignClient(client, s3.WithPresignClientFromClientOptions(func(o *s3.Options) {
		if opts.PublicEndpoint != "" {
			o.BaseEndpoint = aws.String(opts.PublicEndpoint)
		}
	}))
	return &Archive{client: client, presign: presign, opts: opts, log: opts.Logger}, nil
}

// Close releases nothing; it exists so every component shuts down the same way.
func (a *Archive) Close() error { return nil }

// Ping reports whether the bucket can be reached with the configured credentials.
func (a *Archive) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.CallTimeout)
	defer cancel()
	if _, err := a.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &a.opts.Bucket}); err != nil {
		return unavailable(err, "bucket %q", a.opts.Bucket)
	}
	return nil
}

// CreateBucket creates the bucket (for `parley migrate` and the local stack). A bucket
// this account already owns is left as it is.
func (a *Archive) CreateBucket(ctx context.Context) error {
	in := &s3.CreateBucketInput{Bucket: &a.opts.Bucket}
	if a.opts.Region != DefaultRegion {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(a.opts.Region),
		}
	}
	_, err := a.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return unavailable(err, "creating bucket %q", a.opts.Bucket)
	}
	waiter := s3.NewBucketExistsWaiter(a.client, func(o *s3.BucketExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := waiter.Wait(ctx, &s3.HeadBucketInput{Bucket: &a.opts.Bucket}, time.Minute); err != nil {
		return unavailable(err, "waiting for bucket %q", a.opts.Bucket)
	}
	return nil
}

// Put uploads body as a private CSV object with its SHA-256 (checked by S3 on
// arrival and kept as metadata), then confirms size and checksum with HeadObject.
func (a *Archive) Put(ctx context.Context, key string, body []byte) (chat.ArchiveObject, error) {
	sum := sha256.Sum256(body)
	want := chat.ArchiveObject{Key: key, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
	putCtx, cancel := context.WithTimeout(ctx, a.opts.PutTimeout)
	defer cancel()
	_, err := a.client.PutObject(putCtx, &s3.PutObjectInput{
		Bucket:            &a.opts.Bucket,
		Key:               aws.String(a.objectKey(key)),
		Body:              bytes.NewReader(body),
		ContentLength:     aws.Int64(int64(len(body))),
		ContentType:       aws.String(contentType),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		Metadata:          map[string]string{metaSHA256: want.SHA256},
	})
	if err != nil {
		return chat.ArchiveObject{}, unavailable(err, "uploading %s", key)
	}
	got, err := a.Stat(ctx, key)
	if err != nil {
		return chat.ArchiveObject{}, err
	}
	if got != want {
		return chat.ArchiveObject{}, chat.Errorf(chat.EInternal,
			"s3: %s stored as %d bytes sha256 %s, sent %d bytes sha256 %s", key, got.Size, got.SHA256, want.Size, want.SHA256)
	}
	a.log.Debug("s3: transcript archived and confirmed", "key", key, "bytes", got.Size)
	return got, nil
}

// Stat returns the stored object's size and SHA-256 (S3's checksum, cross-checked with
// the metadata Put wrote), or ENotFound.
func (a *Archive) Stat(ctx context.Context, key string) (chat.ArchiveObject, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.CallTimeout)
	defer cancel()
	out, err := a.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       &a.opts.Bucket,
		Key:          aws.String(a.objectKey(key)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return chat.ArchiveObject{}, a.translate(err, key)
	}
	sum, err := objectSHA256(out)
	if err != nil {
		return chat.ArchiveObject{}, chat.Wrap(chat.EInternal, err, "s3: checksum of %s", key)
	}
	return chat.ArchiveObject{Key: key, Size: aws.ToInt64(out.ContentLength), SHA256: sum}, nil
}

// objectSHA256 returns the hex SHA-256 of a HeadObject answer: S3's full-object
// checksum when present, the metadata otherwise; both present and different is an error.
func objectSHA256(out *s3.HeadObjectOutput) (string, error) {
	meta := strings.ToLower(out.Metadata[metaSHA256])
	b64 := aws.ToString(out.ChecksumSHA256)
	if b64 == "" || strings.Contains(b64, "-") || out.ChecksumType == types.ChecksumTypeComposite {
		return meta, nil // no checksum, or one of parts (multipart), not of the object
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", err
	}
	s3sum := hex.EncodeToString(raw)
	if meta != "" && meta != s3sum {
		return "", errors.New("metadata sha256 " + meta + " differs from S3's checksum " + s3sum)
	}
	return s3sum, nil
}

// Open returns the object's content, or ENotFound. The caller closes it. Reading it
// whole is bounded by PutTimeout, as uploading it is.
func (a *Archive) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.PutTimeout)
	out, err := a.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &a.opts.Bucket,
		Key:    aws.String(a.objectKey(key)),
	})
	if err != nil {
		cancel()
		return nil, a.translate(err, key)
	}
	return cancelOnClose{out.Body, cancel}, nil
}

// cancelOnClose is a response body whose call's deadline ends when it is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// URL returns a presigned GET of the object, signed for PublicEndpoint and valid for
// ttl (PresignTTL when ttl <= 0), that makes the browser save it as filename. The URL
// is a bearer credential until it expires: it is never logged.
func (a *Archive) URL(ctx context.Context, key, filename string, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = a.opts.PresignTTL
	}
	if filename == "" {
		filename = path.Base(key)
	}
	disposition := mime.FormatMediaType("attachment", map[string]string{"filename": filename})
	if disposition == "" { // a name mime cannot encode: let the browser pick one
		disposition = "attachment"
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.CallTimeout)
	defer cancel()
	req, err := a.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket:                     &a.opts.Bucket,
		Key:                        aws.String(a.objectKey(key)),
		ResponseContentDisposition: aws.String(disposition),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", chat.Wrap(chat.EInternal, err, "s3: presigning a download of %s", key)
	}
	return req.URL, nil
}

func (a *Archive) objectKey(key string) string { return a.opts.Prefix + key }

// translate maps "no such object" answers to ENotFound and the rest to EUnavailable.
func (a *Archive) translate(err error, key string) error {
	if isNotFound(err) {
		return chat.Wrap(chat.ENotFound, err, "no archived object %s", key)
	}
	return unavailable(err, "reading %s", key)
}

// isNotFound recognises a missing object: NoSuchKey (GetObject), NotFound (HeadObject,
// which has no body to name the error) or another 404 answer. A missing bucket is a
// configuration problem, not a missing object, where S3 says so.
func isNotFound(err error) bool {
	var noBucket *types.NoSuchBucket
	if errors.As(err, &noBucket) {
		return false
	}
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	var resp *smithyhttp.ResponseError
	return errors.As(err, &noKey) || errors.As(err, &notFound) ||
		errors.As(err, &resp) && resp.HTTPStatusCode() == http.StatusNotFound
}

func unavailable(err error, format string, args ...any) error {
	return chat.Wrap(chat.EUnavailable, err, "s3: "+format, args...)
}
