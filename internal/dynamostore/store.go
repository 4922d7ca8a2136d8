// Package dynamostore keeps chat messages in Amazon DynamoDB, the original design's
// `message` table, so many Parley replicas can share one message store that scales
// without a database server to run. It implements chat.MessageStore using only single-item
// conditional writes, queries and BatchWriteItem: the operations that DynamoDB and its
// local stand-in dynalite both offer (no transactions, TTL or PartiQL).
//
// # Table layout
//
// One partition per session: partition key sessionId (S), sort key seq (N). Messages
// live at seq 1, 2, 3…, with the original design's attribute names (fromEmail, toEmail,
// chatRoom, createdDatetime, message) plus kind, clientId and writeId; one item per message, no
// other items (see append.go for how seqs and client ids stay unique with one write).
// Tables written by earlier versions also hold dedupe guards at negative seqs: every
// read of messages is a key range `seq > after` (after >= 0) that never sees them, and
// purging a session is one query over one partition that removes them too.
//
// IAM: dynamodb:PutItem, GetItem, Query, BatchWriteItem and DescribeTable
// (Ping) on the table; CreateTable only for `parley migrate --create-table`.
package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"parley/internal/chat"
)

var _ chat.MessageStore = (*Store)(nil)

// Defaults of Options, as in the original design: a table named "message" in us-east-1.
const (
	DefaultTable  = "message"
	DefaultRegion = "us-east-1"
)

// Key attribute names of the table. `parley migrate --create-table` and the local stack
// create the table with exactly these.
const (
	attrSession = "sessionId"
	attrSeq     = "seq"
)

// Options configure a Store. Only Table and Region have defaults; credentials come from
// the AWS SDK's default chain (environment, shared files, instance role) unless
// Credentials is set.
type Options struct {
	Table    string // default "message"
	Region   string // default "us-east-1"
	Endpoint string // optional override, e.g. http://127.0.0.1:4567 for dynalite
	// Credentials overrides the SDK's default chain (tests, stand-ins); nil keeps it.
	Credentials aws.CredentialsProvider
	Logger      *slog.Logger // nil discards
}

// Store is a chat.MessageStore on one DynamoDB table. It is safe for concurrent use,
// also by several replicas on the same table.
type Store struct {
	client *dynamodb.Client
	table  string
	log    *slog.Logger
	seqs   *seqCache
	// pageSize is the Limit of each Query page; tests lower it to exercise paging.
	pageSize int32
}

// defaultPageSize keeps Query pages well under DynamoDB's 1 MB page limit for chat
// messages (at most a few KB each) while needing few round trips.
const defaultPageSize = 1000

// Open builds a client for the table; it does not contact DynamoDB (use Ping to check
// that the table is reachable, CreateTable to make it).
func Open(ctx context.Context, opts Options) (*Store, error) {
	return open(ctx, opts)
}

// open is Open with changes to the client's options (tests count and disturb requests).
func open(ctx context.Context, opts Options, tune ...func(*dynamodb.Options)) (*Store, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	loaders := []func(*config.LoadOptions) error{config.WithRegion(opts.Region), config.WithHTTPClient(httpClient())}
	if opts.Credentials != nil {
		loaders = append(loaders, config.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "loading AWS configuration for DynamoDB")
	}
	client := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		for _, f := range tune {
			f(o)
		}
	})
	return &Store{client: client, table: opts.Table, log: opts.Logger, seqs: newSeqCache(dedupeWindow), pageSize: defaultPageSize}, nil
}

// maxIdleConns keeps connections to DynamoDB open for this many concurrent requests
// (the SDK keeps 10): each Append is one or a few small sequential requests, and many
// sessions append at once, so reconnecting would cost more than the requests.
const maxIdleConns = 128

func httpClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = maxIdleConns, maxIdleConns
	})
}

// Table returns the table's name (for start-up logs).
func (s *Store) Table() string { return s.table }

// Ping reports whether the table can be described: DynamoDB is reachable, the
// credentials work and the table exists.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.table})
	if err != nil {
		return unavailable(err, "describing table %q", s.table)
	}
	return nil
}

// Close releases nothing: the SDK's HTTP client needs no closing. It exists so every
// component shuts down the same way.
func (s *Store) Close() error { return nil }

// CreateTable creates the table with on-demand capacity (for `parley migrate
// --create-table` and the local stack) and waits until it is active. A table that
// already exists is left as it is.
func (s *Store) CreateTable(ctx context.Context) error {
	_, err := s.client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   &s.table,
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrSession), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSeq), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrSession), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSeq), KeyType: types.KeyTypeRange},
		},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return unavailable(err, "creating table %q", s.table)
	}
	waiter := dynamodb.NewTableExistsWaiter(s.client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: &s.table}, 5*time.Minute); err != nil {
		return unavailable(err, "waiting for table %q to become active", s.table)
	}
	return nil
}

// deleteTable removes the table; tests use it to clean up their own tables.
func (s *Store) deleteTable(ctx context.Context) error {
	_, err := s.client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &s.table})
	var missing *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &missing) {
		return unavailable(err, "deleting table %q", s.table)
	}
	return nil
}

// unavailable wraps a DynamoDB failure: the store could not do its work now, and the
// caller may retry later. The cause (with the AWS request id) stays in the chain.
func unavailable(err error, format string, args ...any) error {
	return chat.Wrap(chat.EUnavailable, err, "dynamodb: %s", fmt.Sprintf(format, args...))
}

// isConditionFailed reports whether a conditional write lost: the item was there.
func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}
