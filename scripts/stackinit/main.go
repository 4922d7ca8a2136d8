// Command stackinit creates what Parley expects to find in the local test
// stand-ins: the DynamoDB `message` table in dynalite and the transcript
// bucket in MinIO. scripts/stack.sh runs it after starting them. It calls the
// same CreateTable and CreateBucket that `parley migrate --create-table
// --create-bucket` uses, so the stack's table has exactly the key Parley
// queries. Both are idempotent, so `make test` can run it every time.
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (MinIO's
// root user; dynalite accepts any).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"parley/internal/dynamostore"
	"parley/internal/s3blob"
)

// settings are the command-line flags.
type settings struct {
	region, dynamoEndpoint, table, s3Endpoint, bucket string
	timeout                                           time.Duration
}

func main() {
	var s settings
	flag.StringVar(&s.region, "region", "us-east-1", "AWS region to sign for")
	flag.StringVar(&s.dynamoEndpoint, "dynamodb-endpoint", "", "DynamoDB endpoint URL (empty: skip the table)")
	flag.StringVar(&s.table, "table", "message", "DynamoDB table to create")
	flag.StringVar(&s.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (empty: skip the bucket)")
	flag.StringVar(&s.bucket, "bucket", "parley-transcripts", "S3 bucket to create")
	flag.DurationVar(&s.timeout, "timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	if err := run(s); err != nil {
		fmt.Fprintln(os.Stderr, "stackinit:", err)
		os.Exit(1)
	}
}

// run creates each resource whose endpoint was given.
func run(s settings) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	creds := credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "")
	if s.dynamoEndpoint != "" {
		if err := createTable(ctx, s, creds); err != nil {
			return fmt.Errorf("DynamoDB table %q at %s: %w", s.table, s.dynamoEndpoint, err)
		}
	}
	if s.s3Endpoint != "" {
		if err := createBucket(ctx, s, creds); err != nil {
			return fmt.Errorf("S3 bucket %q at %s: %w", s.bucket, s.s3Endpoint, err)
		}
	}
	return nil
}

func createTable(ctx context.Context, s settings, creds credentials.StaticCredentialsProvider) error {
	store, err := dynamostore.Open(ctx, dynamostore.Options{Table: s.table, Region: s.region, Endpoint: s.dynamoEndpoint, Credentials: creds})
	if err != nil {
		return err
	}
	defer store.Close()
	return store.CreateTable(ctx)
}

func createBucket(ctx context.Context, s settings, creds credentials.StaticCredentialsProvider) error {
	archive, err := s3blob.Open(ctx, s3blob.Options{Bucket: s.bucket, Region: s.region, Endpoint: s.s3Endpoint, PathStyle: true, Credentials: creds})
	if err != nil {
		return err
	}
	defer archive.Close()
	return archive.CreateBucket(ctx)
}
