package dynamostore

// Seq allocation and dedupe with one write per message.
//
// DynamoDB's only atomic step that dynalite also has is a conditional write of one
// item. A message is written at seq N with attribute_not_exists(seq): of all writers
// that try N (any replica), exactly one wins. Messages are never rewritten, so seqs run
// 1, 2, 3… with no gap and no seq twice.
//
// Dedupe (one seq per client id) comes from what this replica knows of the session,
// kept in memory per session (sessionSeq):
//
//   - last, the highest seq it knows of, and
//   - ids, the client id (as a 64-bit hash) → seq of every message it knows of, which is
//     every message from the start of the session to last, or the newest
//     window of them for a longer session.
//
// Append(c) looks c up in ids. A hit is a resend: it reads that message back (GetItem)
// and returns it as the duplicate. A miss writes c at last+1. If that write wins, the
// session holds exactly the seqs 1..last+1, and none of 1..last is c: the one write
// was all. If it loses, another replica appended meanwhile: a consistent Query of the
// tail (seq > last) reads what it wrote into ids; if one of those is c, that message is
// returned as the duplicate (so two replicas appending c at once both answer with the
// one stored message), otherwise c is written at the new last+1.
//
// Why no client id is stored twice: c is written at N only by an Append that knew
// every message below N (within the window) and found no c among them. Of two writes
// of c at N1 < N2, the second would have seen the first.
//
// Knowledge is built once per session and replica by a consistent Query of the
// session's newest window of messages (cold: the first Append on this replica, after a
// restart, or after the session was evicted from memory), and then kept up to date by
// this replica's own writes and by the tail reads above. A session whose tail another
// replica keeps extending (its two people on different replicas) is marked shared: its
// next Append first reads the tail (one read unit) rather than losing a write to learn
// of it, until such a read finds nothing new.
//
// The window: ids keeps at least the newest dedupeWindow messages of a session. A
// resend of a client id older than that (in a session longer than dedupeWindow
// messages, after that many newer messages) is stored again as a new message. Parley's
// clients resend only messages they have not seen acknowledged, after a reconnect, so
// that needs thousands of messages from the other person while the sender was away.
//
// The SDK retries a request whose answer was lost; if the first attempt of a message
// write landed, the retry's condition fails against our own item. Each Append stamps
// its write with a random writeId, and the tail read that follows recognises the item
// as ours, so it is reported as stored, not as a duplicate, and nothing is written twice.
//
// A failed Append (error) may have stored its message; ids does not know it, so the
// client's resend loses the write at that seq, reads the tail, finds its client id and
// gets the stored message as the duplicate.
//
// Within one replica, Appends to the same session take turns (a per-session lock), so
// they do not race each other for seqs; replicas race through the conditional writes.
// Appends to different sessions run in parallel. They cannot share a batch:
// BatchWriteItem has no conditions, and conditions are what make this correct.
//
// Cost per message (see docs/DEPLOY.md, "DynamoDB cost per message"): one conditional
// PutItem; one Query per session and replica when cold; a lost race adds a Query and
// one more PutItem; a shared session adds a Query per message instead.
//
// Tables written by earlier Parley versions also hold dedupe guard items at negative
// seqs. Every read here is a key range seq > 0 that never sees them, and DeleteSession
// removes them with the session's messages.

import (
	"context"
	"errors"
	"hash/maphash"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"parley/internal/chat"
)

// Append stores m as the session's next message, or returns the message stored earlier
// with the same client id (duplicate true). See the comment at the top of append.go.
func (s *Store) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	if m.SessionID == "" {
		return chat.Message{}, false, chat.Errorf(chat.EInvalid, "a message needs a session id")
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = chat.Now()
	}
	m.CreatedAt = m.CreatedAt.UTC().Truncate(time.Microsecond)
	st := s.seqs.acquire(m.SessionID)
	defer s.seqs.release(st)
	select {
	case st.turn <- struct{}{}:
	case <-ctx.Done():
		return chat.Message{}, false, chat.Wrap(chat.EUnavailable, ctx.Err(), "waiting to append to session %s", m.SessionID)
	}
	defer func() {
		s.seqs.account(st) // while holding the turn: st.ids is ours to read
		<-st.turn
	}()
	return s.appendInTurn(ctx, st, m)
}

// errStale tells appendInTurn that what st knew no longer holds: start over.
var errStale = errors.New("dynamodb: session changed under an append")

// maxStaleReloads bounds how often one Append starts over after finding that what it
// knew of the session no longer holds (the session was purged meanwhile).
const maxStaleReloads = 3

func (s *Store) appendInTurn(ctx context.Context, st *sessionSeq, m chat.Message) (chat.Message, bool, error) {
	var h uint64
	if m.ClientID != "" {
		h = s.seqs.hash(m.ClientID)
	}
	for range maxStaleReloads {
		if !st.known {
			if err := s.loadWindow(ctx, st, m.SessionID); err != nil {
				return chat.Message{}, false, err
			}
		}
		if seq, hit := st.ids[h]; hit && m.ClientID != "" {
			prev, _, found, err := s.getMessage(ctx, m.SessionID, seq)
			switch {
			case err != nil:
				return chat.Message{}, false, err
			case found && prev.ClientID == m.ClientID:
				return prev, true, nil // a resend
			case !found: // purged meanwhile: what we knew is stale
				st.reset()
				continue
			}
			// Two client ids with one hash (odds about n/2^64): settle it exactly.
			if prev, found, err := s.findClientID(ctx, m.SessionID, m.ClientID); err != nil || found {
				return prev, found, err
			}
		}
		stored, dup, err := s.write(ctx, st, m, h)
		if err == errStale {
			st.reset()
			continue
		}
		return stored, dup, err
	}
	return chat.Message{}, false, chat.Errorf(chat.EUnavailable, "dynamodb: session %s keeps changing under an append", m.SessionID)
}

// write stores m at the session's next free seq, unless the tail it learns of on the
// way holds m's client id (then that message is returned as the duplicate). h is the
// hash of m.ClientID (unused when it is ""). errStale: st no longer matches the table.
func (s *Store) write(ctx context.Context, st *sessionSeq, m chat.Message, h uint64) (chat.Message, bool, error) {
	writeID := newWriteID()
	if st.shared {
		tail, err := s.readTail(ctx, st, m, writeID)
		if err != nil || tail.dup {
			return tail.there, tail.dup, err
		}
		st.shared = tail.grew
	}
	for {
		if err := ctx.Err(); err != nil {
			return chat.Message{}, false, chat.Wrap(chat.EUnavailable, err, "appending message")
		}
		m.Seq = st.last + 1
		won, err := s.putMessage(ctx, m, writeID)
		if err != nil {
			return chat.Message{}, false, err
		}
		if won {
			st.learn(m.ClientID, h, m.Seq)
			return m, false, nil
		}
		s.log.Debug("dynamodb: message seq taken", "session", m.SessionID, "seq", m.Seq)
		st.shared = true
		tail, err := s.readTail(ctx, st, m, writeID)
		switch {
		case err != nil:
			return chat.Message{}, false, err
		case tail.own: // the SDK retried our write after its answer was lost
			return tail.there, false, nil
		case tail.dup:
			return tail.there, true, nil
		case !tail.grew: // the seq was taken and is free again: a purge
			return chat.Message{}, false, errStale
		}
	}
}

// putMessage writes m at m.Seq if that seq is free and reports whether it did.
func (s *Store) putMessage(ctx context.Context, m chat.Message, writeID string) (won bool, err error) {
	item, err := toItem(m, writeID)
	if err != nil {
		return false, err
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                &s.table,
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#q)"),
		ExpressionAttributeNames: map[string]string{"#q": attrSeq},
	})
	switch {
	case err == nil:
		return true, nil
	case isConditionFailed(err):
		return false, nil
	}
	return false, unavailable(err, "storing message %d of session %s", m.Seq, m.SessionID)
}

// tailResult says what a read of the session's tail found: any new message at all
// (grew), m's own write (own, with there), or an earlier message with m's client id
// (dup, with there).
type tailResult struct {
	grew, own, dup bool
	there          chat.Message
}

// readTail reads every message after st.last with a consistent Query, adds them to
// what st knows and reports whether one of them is m's (by writeID) or holds m's
// client id. It stops at the first such message.
func (s *Store) readTail(ctx context.Context, st *sessionSeq, m chat.Message, writeID string) (tailResult, error) {
	var res tailResult
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    aws.String("#s = :s AND #q > :after"),
		ExpressionAttributeNames:  keyNames,
		ExpressionAttributeValues: sessionAfter(m.SessionID, st.last),
		ConsistentRead:            aws.Bool(true),
		Limit:                     aws.Int32(s.pageSize),
	}
	for {
		page, err := s.client.Query(ctx, in)
		if err != nil {
			return res, unavailable(err, "reading the newest messages of session %s", m.SessionID)
		}
		for _, item := range page.Items {
			there, thereWrite, err := decodeItem(item)
			if err != nil {
				return res, err
			}
			res.grew = true
			st.learn(there.ClientID, s.seqs.hashOf(there.ClientID), there.Seq)
			if thereWrite == writeID {
				res.own, res.there = true, there
				return res, nil
			}
			if m.ClientID != "" && there.ClientID == m.ClientID {
				res.dup, res.there = true, there
				return res, nil
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return res, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// loadWindow replaces what st knows with the session's newest messages, up to
// dedupeWindow of them, read newest first with a consistent Query of their keys and client
// ids.
func (s *Store) loadWindow(ctx context.Context, st *sessionSeq, sessionID string) error {
	st.reset()
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		KeyConditionExpression:    aws.String("#s = :s AND #q > :after"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSession, "#q": attrSeq, "#c": "clientId"},
		ExpressionAttributeValues: sessionAfter(sessionID, 0),
		ProjectionExpression:      aws.String("#q, #c"),
		ScanIndexForward:          aws.Bool(false),
		ConsistentRead:            aws.Bool(true),
	}
	for n := 0; n < s.seqs.window; {
		in.Limit = aws.Int32(int32(min(s.seqs.window-n, int(s.pageSize))))
		page, err := s.client.Query(ctx, in)
		if err != nil {
			return unavailable(err, "reading the newest messages of session %s", sessionID)
		}
		for _, item := range page.Items {
			seq, err := seqOf(item)
			if err != nil {
				return err
			}
			var client string
			if v, ok := item["clientId"].(*types.AttributeValueMemberS); ok {
				client = v.Value
			}
			st.learn(client, s.seqs.hashOf(client), seq)
		}
		n += len(page.Items)
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	st.known = true
	return nil
}

// findClientID looks for the message with clientID anywhere in the session: a Query
// of the whole partition filtered on clientId. It reads every message of the session,
// so it only runs when two client ids share a hash.
func (s *Store) findClientID(ctx context.Context, sessionID, clientID string) (chat.Message, bool, error) {
	in := &dynamodb.QueryInput{
		TableName:                &s.table,
		KeyConditionExpression:   aws.String("#s = :s AND #q > :after"),
		FilterExpression:         aws.String("#c = :c"),
		ExpressionAttributeNames: map[string]string{"#s": attrSession, "#q": attrSeq, "#c": "clientId"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":s": &types.AttributeValueMemberS{Value: sessionID}, ":after": numberValue(0),
			":c": &types.AttributeValueMemberS{Value: clientID},
		},
		ConsistentRead: aws.Bool(true),
	}
	for {
		page, err := s.client.Query(ctx, in)
		if err != nil {
			return chat.Message{}, false, unavailable(err, "looking for a client id in session %s", sessionID)
		}
		if len(page.Items) > 0 {
			m, err := fromItem(page.Items[0])
			return m, err == nil, err
		}
		if len(page.LastEvaluatedKey) == 0 {
			return chat.Message{}, false, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// getMessage reads the message at seq, and its write id, with a consistent read.
func (s *Store) getMessage(ctx context.Context, sessionID string, seq int64) (chat.Message, string, bool, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: &s.table, Key: key(sessionID, seq), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return chat.Message{}, "", false, unavailable(err, "reading message %d of session %s", seq, sessionID)
	}
	if out.Item == nil {
		return chat.Message{}, "", false, nil
	}
	m, writeID, err := decodeItem(out.Item)
	return m, writeID, err == nil, err
}

// hashOf returns the in-memory key of a client id, 0 for none.
func (c *seqCache) hashOf(clientID string) uint64 {
	if clientID == "" {
		return 0
	}
	return c.hash(clientID)
}

func (c *seqCache) hash(clientID string) uint64 { return maphash.String(c.seed, clientID) }
