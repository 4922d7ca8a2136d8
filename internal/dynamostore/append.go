package dynamostore

// Seq allocation and dedupe without transactions.
//
// DynamoDB's only atomic step that dynalite also has is a conditional write of one
// item, so Append is built from two kinds of item in the session's partition:
//
//   - the message itself at seq N, written with attribute_not_exists(seq): of all
//     writers that try seq N (any replica), exactly one wins. A writer tries N only
//     when it believes the session's last seq is N-1; a stale belief (another replica
//     appended meanwhile) makes the write fail, the writer re-reads the last seq with a
//     consistent Query and tries again. Messages are never rewritten, so seqs run 1, 2,
//     3… with no gap and no seq twice.
//
//   - a guard for the client id at seq -1-hash(clientId) (the slot), holding the
//     client id and msgSeq, the one seq at which that client id may be stored. The
//     first Append of a client id creates it (conditional put) pointing at the seq it
//     is about to try. Every Append of that client id, first or repeated, on any
//     replica, writes the message only at the guard's msgSeq. When msgSeq turns out to
//     be taken by another client's message, the guard is moved forward with a
//     conditional update (msgSeq = old), and everyone follows it.
//
// Why no client id is stored twice: a message with client id c is only ever written at
// a seq that c's guard pointed to, and the guard leaves a seq only after a message of
// another client was seen there. Messages are immutable, so a seq the guard has left
// can never hold c, and the seqs it jumped over were never targets. Two Appends of c
// that race for the guard's seq are decided by the message's own conditional write:
// the loser reads the winner's item, sees c and returns it as the duplicate.
//
// A crash between the two writes leaves a guard without its message; the client's
// resend (same client id) finds the guard and writes the message at its msgSeq, or
// moves the guard on, so nothing is lost or duplicated.
//
// The SDK retries a request whose answer was lost; if the first attempt of a message
// write landed, the retry's condition fails against our own item. Each Append stamps
// its writes with a random writeId, so it recognises its own item and reports it as
// stored, not as a duplicate (and an Append without client id does not store twice).
//
// Client ids whose slots collide (different id found in the slot) probe the next slot
// down. A clientId of "" skips the guard.
//
// Within one replica, Appends to the same session take turns (a per-session lock with
// the cached last seq), so they do not race each other for seqs; replicas race through
// the conditional writes above. Appends to different sessions run in parallel. They
// cannot share a batch: BatchWriteItem has no conditions, and conditions are what make
// this correct. An uncontended Append costs two conditional PutItems.

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"parley/internal/chat"
)

// maxSlotProbes bounds the search for a free guard slot: a collision of 62-bit hashes
// is already improbable; many in a row means something is wrong.
const maxSlotProbes = 16

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
	defer s.seqs.release(m.SessionID, st)
	select {
	case st.turn <- struct{}{}:
		defer func() { <-st.turn }()
	case <-ctx.Done():
		return chat.Message{}, false, chat.Wrap(chat.EUnavailable, ctx.Err(), "waiting to append to session %s", m.SessionID)
	}
	if !st.known {
		if err := s.refreshLast(ctx, st, m.SessionID); err != nil {
			return chat.Message{}, false, err
		}
	}
	writeID := newWriteID()
	if m.ClientID == "" {
		return s.appendUnguarded(ctx, st, m, writeID)
	}
	g, err := s.claimGuard(ctx, m.SessionID, m.ClientID, st.last+1)
	if err != nil {
		return chat.Message{}, false, err
	}
	return s.appendAtGuard(ctx, st, m, writeID, g)
}

// appendUnguarded writes m at the next free seq, for messages without a client id.
func (s *Store) appendUnguarded(ctx context.Context, st *sessionSeq, m chat.Message, writeID string) (chat.Message, bool, error) {
	for {
		if err := ctx.Err(); err != nil {
			return chat.Message{}, false, chat.Wrap(chat.EUnavailable, err, "appending message")
		}
		m.Seq = st.last + 1
		res, err := s.putMessage(ctx, m, writeID)
		if err != nil {
			return chat.Message{}, false, err
		}
		if res.won {
			st.last = m.Seq
			return m, false, nil
		}
		if err := s.refreshLast(ctx, st, m.SessionID); err != nil {
			return chat.Message{}, false, err
		}
	}
}

// appendAtGuard writes m at the guard's seq, following the guard as it moves, until m
// or an earlier message with its client id is stored there.
func (s *Store) appendAtGuard(ctx context.Context, st *sessionSeq, m chat.Message, writeID string, g guardItem) (chat.Message, bool, error) {
	for {
		if err := ctx.Err(); err != nil {
			return chat.Message{}, false, chat.Wrap(chat.EUnavailable, err, "appending message")
		}
		m.Seq = g.Target
		res, err := s.putMessage(ctx, m, writeID)
		switch {
		case err != nil:
			return chat.Message{}, false, err
		case res.won:
			st.last = max(st.last, m.Seq)
			return m, false, nil
		case !res.found:
			continue // deleted meanwhile (a purge racing an Append): try the seq again
		case res.there.ClientID == m.ClientID:
			st.last = max(st.last, res.there.Seq)
			return res.there, true, nil
		}
		if st.last < g.Target { // another replica appended: learn how far
			if err := s.refreshLast(ctx, st, m.SessionID); err != nil {
				return chat.Message{}, false, err
			}
		}
		if g, err = s.moveGuard(ctx, g, max(st.last+1, g.Target+1)); err != nil {
			return chat.Message{}, false, err
		}
	}
}

// putResult says how a conditional message write went: won, or lost to there (found
// false when the seq turned out free again, after a purge).
type putResult struct {
	won   bool
	there chat.Message
	found bool
}

// putMessage writes m at m.Seq if that seq is free. When it is taken, it reads what is
// there; an item with writeID is this Append's own earlier attempt, retried by the SDK
// after its answer was lost, and counts as won.
func (s *Store) putMessage(ctx context.Context, m chat.Message, writeID string) (putResult, error) {
	item, err := toItem(m, writeID)
	if err != nil {
		return putResult{}, err
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                &s.table,
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#q)"),
		ExpressionAttributeNames: map[string]string{"#q": attrSeq},
	})
	if err == nil {
		return putResult{won: true}, nil
	}
	if !isConditionFailed(err) {
		return putResult{}, unavailable(err, "storing message %d of session %s", m.Seq, m.SessionID)
	}
	s.log.Debug("dynamodb: message seq taken", "session", m.SessionID, "seq", m.Seq)
	there, thereWrite, found, err := s.getMessage(ctx, m.SessionID, m.Seq)
	if err != nil {
		return putResult{}, err
	}
	return putResult{won: found && thereWrite == writeID, there: there, found: found}, nil
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

// claimGuard returns the guard of clientID, creating it pointing at target when the
// client id is new to the session.
func (s *Store) claimGuard(ctx context.Context, sessionID, clientID string, target int64) (guardItem, error) {
	slot := guardSlot(clientID)
	for range maxSlotProbes {
		g := guardItem{SessionID: sessionID, Seq: slot, ClientID: clientID, Target: target}
		won, err := s.putGuard(ctx, g)
		if err != nil || won {
			return g, err
		}
		there, found, err := s.getGuard(ctx, sessionID, slot)
		if err != nil {
			return guardItem{}, err
		}
		if found && there.ClientID == clientID {
			return there, nil
		}
		if found {
			slot-- // another client id hashed to this slot: probe the next one
		}
	}
	return guardItem{}, chat.Errorf(chat.EInternal, "no free dedupe slot for a client id in session %s", sessionID)
}

func (s *Store) putGuard(ctx context.Context, g guardItem) (won bool, err error) {
	item, err := attributevalue.MarshalMap(g)
	if err != nil {
		return false, chat.Wrap(chat.EInternal, err, "encoding dedupe guard")
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
	return false, unavailable(err, "storing dedupe guard of session %s", g.SessionID)
}

func (s *Store) getGuard(ctx context.Context, sessionID string, slot int64) (guardItem, bool, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: &s.table, Key: key(sessionID, slot), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return guardItem{}, false, unavailable(err, "reading dedupe guard of session %s", sessionID)
	}
	if out.Item == nil {
		return guardItem{}, false, nil
	}
	var g guardItem
	if err := attributevalue.UnmarshalMap(out.Item, &g); err != nil {
		return guardItem{}, false, chat.Wrap(chat.EInternal, err, "decoding dedupe guard")
	}
	return g, true, nil
}

// moveGuard points g at target, unless another Append of the same client id moved it
// first; either way it returns the guard as it now is.
func (s *Store) moveGuard(ctx context.Context, g guardItem, target int64) (guardItem, error) {
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &s.table,
		Key:                      key(g.SessionID, g.Seq),
		UpdateExpression:         aws.String("SET #t = :new"),
		ConditionExpression:      aws.String("#t = :old AND #c = :client"),
		ExpressionAttributeNames: map[string]string{"#t": "msgSeq", "#c": "clientId"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":new":    numberValue(target),
			":old":    numberValue(g.Target),
			":client": &types.AttributeValueMemberS{Value: g.ClientID},
		},
	})
	switch {
	case err == nil:
		g.Target = target
		return g, nil
	case !isConditionFailed(err):
		return guardItem{}, unavailable(err, "moving dedupe guard of session %s", g.SessionID)
	}
	now, found, err := s.getGuard(ctx, g.SessionID, g.Seq)
	if err != nil {
		return guardItem{}, err
	}
	if !found || now.ClientID != g.ClientID {
		return guardItem{}, chat.Errorf(chat.EConflict, "dedupe guard of session %s vanished (session purged?)", g.SessionID)
	}
	return now, nil
}

// refreshLast reads the session's last seq with a consistent query into st.
func (s *Store) refreshLast(ctx context.Context, st *sessionSeq, sessionID string) error {
	last, err := s.LastSeq(ctx, sessionID)
	if err != nil {
		return err
	}
	st.last, st.known = last, true
	return nil
}

// seqCache remembers, per session, the last seq this replica knows of and a lock that
// makes this replica's Appends to one session take turns. Entries live while in use and
// are kept afterwards up to maxCachedSessions.
type seqCache struct {
	mu sync.Mutex
	m  map[string]*sessionSeq
}

// maxCachedSessions bounds the cache; chats are short, so a forgotten entry only costs
// one Query on the session's next Append.
const maxCachedSessions = 10000

type sessionSeq struct {
	turn  chan struct{} // holds one token during an Append; a channel so waiting heeds ctx
	last  int64         // highest seq known; a hint, checked by every conditional write
	known bool
	users int // Appends holding or waiting for a turn; guarded by seqCache.mu
}

func newSeqCache() *seqCache { return &seqCache{m: make(map[string]*sessionSeq)} }

func (c *seqCache) acquire(sessionID string) *sessionSeq {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[sessionID]
	if st == nil {
		st = &sessionSeq{turn: make(chan struct{}, 1)}
		c.m[sessionID] = st
	}
	st.users++
	return st
}

func (c *seqCache) release(sessionID string, st *sessionSeq) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.users--
	if st.users == 0 && len(c.m) > maxCachedSessions && c.m[sessionID] == st {
		delete(c.m, sessionID)
	}
}

// forget drops what this replica knows of a session's seqs (after DeleteSession), so
// the next Append reads the last seq again.
func (c *seqCache) forget(sessionID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, sessionID)
}
