package dynamostore

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"parley/internal/chat"
)

// keyNames names the key attributes in every expression, so no attribute name can
// clash with a DynamoDB reserved word.
var keyNames = map[string]string{"#s": attrSession, "#q": attrSeq}

// Messages returns up to limit messages of the session with seq > after, oldest first
// (limit <= 0: all of them). It is a Query on the session's partition, page by page,
// with consistent reads so a message acknowledged by Append is always seen.
func (s *Store) Messages(ctx context.Context, sessionID string, after int64, limit int) ([]chat.Message, error) {
	var out []chat.Message
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    aws.String("#s = :s AND #q > :after"),
		ExpressionAttributeNames:  keyNames,
		ExpressionAttributeValues: sessionAfter(sessionID, max(after, 0)),
		ConsistentRead:            aws.Bool(true),
	}
	for {
		in.Limit = aws.Int32(s.pageSize)
		if limit > 0 {
			in.Limit = aws.Int32(int32(min(limit-len(out), int(s.pageSize))))
		}
		page, err := s.client.Query(ctx, in)
		if err != nil {
			return nil, unavailable(err, "querying messages of session %s", sessionID)
		}
		for _, item := range page.Items {
			m, err := fromItem(item)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		if len(page.LastEvaluatedKey) == 0 || limit > 0 && len(out) >= limit {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// LastSeq returns the session's highest message seq (0 when none): a consistent Query
// for the one highest key above 0, which leaves out the dedupe guards that tables
// written by earlier versions hold below it.
func (s *Store) LastSeq(ctx context.Context, sessionID string) (int64, error) {
	out, err := s.client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    aws.String("#s = :s AND #q > :after"),
		ExpressionAttributeNames:  keyNames,
		ExpressionAttributeValues: sessionAfter(sessionID, 0),
		ProjectionExpression:      aws.String("#q"),
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(1),
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return 0, unavailable(err, "querying the last seq of session %s", sessionID)
	}
	if len(out.Items) == 0 {
		return 0, nil
	}
	return seqOf(out.Items[0])
}

func sessionAfter(sessionID string, after int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		":s":     &types.AttributeValueMemberS{Value: sessionID},
		":after": numberValue(after),
	}
}

// batchSize is BatchWriteItem's limit of requests per call.
const batchSize = 25

// DeleteSession deletes every item of the session's partition (messages, and the
// dedupe guards of earlier versions) with BatchWriteItem, 25 keys a call, and returns
// how many messages it deleted. Keys are read page by page with a Query projecting
// only the key.
func (s *Store) DeleteSession(ctx context.Context, sessionID string) (int64, error) {
	defer s.seqs.forget(sessionID)
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    aws.String("#s = :s"),
		ExpressionAttributeNames:  keyNames,
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: sessionID}},
		ProjectionExpression:      aws.String("#s, #q"),
		ConsistentRead:            aws.Bool(true),
		Limit:                     aws.Int32(s.pageSize),
	}
	var deleted int64
	for {
		page, err := s.client.Query(ctx, in)
		if err != nil {
			return deleted, unavailable(err, "listing items of session %s", sessionID)
		}
		n, err := s.deleteKeys(ctx, page.Items)
		deleted += n
		if err != nil {
			return deleted, err
		}
		if len(page.LastEvaluatedKey) == 0 {
			return deleted, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// deleteKeys deletes the items with the given keys in batches and returns how many of
// them were messages (seq > 0).
func (s *Store) deleteKeys(ctx context.Context, keys []map[string]types.AttributeValue) (int64, error) {
	var messages int64
	for start := 0; start < len(keys); start += batchSize {
		chunk := keys[start:min(start+batchSize, len(keys))]
		reqs := make([]types.WriteRequest, len(chunk))
		for i, k := range chunk {
			reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
		}
		if err := s.batchWrite(ctx, reqs); err != nil {
			return messages, err
		}
		for _, k := range chunk {
			if seq, err := seqOf(k); err == nil && seq > 0 {
				messages++
			}
		}
	}
	return messages, nil
}

// Backoff between retries of UnprocessedItems: DynamoDB returns them when a partition
// is throttled, and asks callers to wait before resending.
const (
	firstBackoff = 20 * time.Millisecond
	maxBackoff   = 2 * time.Second
	maxAttempts  = 12
)

// batchWrite sends reqs with BatchWriteItem and resends every UnprocessedItems with
// exponential backoff until all are done, the context ends or attempts run out.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	pending := map[string][]types.WriteRequest{s.table: reqs}
	wait := firstBackoff
	for attempt := 1; ; attempt++ {
		out, err := s.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
		if err != nil {
			return unavailable(err, "batch write of %d items", len(pending[s.table]))
		}
		left := out.UnprocessedItems[s.table]
		if len(left) == 0 {
			return nil
		}
		if attempt == maxAttempts {
			return chat.Errorf(chat.EUnavailable, "dynamodb: %d items still unprocessed after %d attempts", len(left), attempt)
		}
		s.log.Debug("dynamodb: retrying unprocessed batch items", "items", len(left), "attempt", attempt, "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return chat.Wrap(chat.EUnavailable, err, "dynamodb: waiting to retry unprocessed items")
		}
		wait = min(2*wait, maxBackoff)
		pending = map[string][]types.WriteRequest{s.table: left}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
