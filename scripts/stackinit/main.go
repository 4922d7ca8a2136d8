// Command stackinit creates what Parley expects to find in the local test
// stand-ins: the DynamoDB `message` table in dynalite and the transcript
// bucket in MinIO. scripts/stack.sh runs it after starting them. It is
// idempotent (an existing table or bucket is checked, not recreated), so
// `make test` can run it every time; it lives in Go rather than shell so it
// needs no AWS CLI on the machine, only the SDK Parley already uses.
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (MinIO's
// root user; dynalite accepts any).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	stypes "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Key attribute names of the message table, shared with internal/dynamostore:
// partition by session, sort by the per-session sequence number.
const (
	partitionKey = "sessionId"
	sortKey      = "seq"
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
		db := dynamodb.New(dynamodb.Options{Region: s.region, BaseEndpoint: aws.String(s.dynamoEndpoint), Credentials: creds})
		if err := ensureTable(ctx, db, s.table); err != nil {
			return fmt.Errorf("DynamoDB table %q at %s: %w", s.table, s.dynamoEndpoint, err)
		}
	}
	if s.s3Endpoint != "" {
		bucketClient := s3.New(s3.Options{Region: s.region, BaseEndpoint: aws.String(s.s3Endpoint), Credentials: creds, UsePathStyle: true})
		if err := ensureBucket(ctx, bucketClient, s.bucket); err != nil {
			return fmt.Errorf("S3 bucket %q at %s: %w", s.bucket, s.s3Endpoint, err)
		}
	}
	return nil
}

// ensureTable creates the message table unless it exists, checks an existing
// one has the expected key, and waits until it is ACTIVE.
func ensureTable(ctx context.Context, db *dynamodb.Client, table string) error {
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var notFound *dtypes.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		if err := createTable(ctx, db, table); err != nil {
			return err
		}
		fmt.Printf("stackinit: created DynamoDB table %s\n", table)
	case err != nil:
		return err
	default:
		if err := checkKeys(out.Table.KeySchema); err != nil {
			return err
		}
	}
	return waitActive(ctx, db, table)
}

// createTable creates the table on demand capacity; losing a creation race
// to another run is fine.
func createTable(ctx context.Context, db *dynamodb.Client, table string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: dtypes.BillingModePayPerRequest,
		AttributeDefinitions: []dtypes.AttributeDefinition{
			{AttributeName: aws.String(partitionKey), AttributeType: dtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String(sortKey), AttributeType: dtypes.ScalarAttributeTypeN},
		},
		KeySchema: []dtypes.KeySchemaElement{
			{AttributeName: aws.String(partitionKey), KeyType: dtypes.KeyTypeHash},
			{AttributeName: aws.String(sortKey), KeyType: dtypes.KeyTypeRange},
		},
	})
	var inUse *dtypes.ResourceInUseException
	if errors.As(err, &inUse) {
		return nil
	}
	return err
}

// checkKeys refuses a table whose key is not sessionId (HASH) + seq (RANGE),
// since Parley's queries would fail on it in confusing ways.
func checkKeys(schema []dtypes.KeySchemaElement) error {
	want := map[string]dtypes.KeyType{partitionKey: dtypes.KeyTypeHash, sortKey: dtypes.KeyTypeRange}
	if len(schema) != len(want) {
		return fmt.Errorf("exists with %d key attributes, want %s (HASH) + %s (RANGE): delete it or restart dynalite", len(schema), partitionKey, sortKey)
	}
	for _, k := range schema {
		if want[aws.ToString(k.AttributeName)] != k.KeyType {
			return fmt.Errorf("exists with key %s (%s), want %s (HASH) + %s (RANGE): delete it or restart dynalite", aws.ToString(k.AttributeName), k.KeyType, partitionKey, sortKey)
		}
	}
	return nil
}

// waitActive polls every 100 ms (the SDK's waiter waits 20 s between polls).
func waitActive(ctx context.Context, db *dynamodb.Client, table string) error {
	for {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return err
		}
		if out.Table.TableStatus == dtypes.TableStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still %s: %w", out.Table.TableStatus, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensureBucket creates the bucket unless it exists and is ours.
func ensureBucket(ctx context.Context, client *s3.Client, bucket string) error {
	_, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	var notFound *stypes.NotFound
	if err == nil {
		return nil
	}
	if !errors.As(err, &notFound) {
		return err
	}
	_, err = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *stypes.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	if err == nil {
		fmt.Printf("stackinit: created S3 bucket %s\n", bucket)
	}
	return err
}
