package dynamostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"parley/internal/chat"
	"parley/internal/chattest"
	"parley/internal/testenv"
)

// dynamoEndpoint returns the DynamoDB stand-in's endpoint (fails under CI=true when
// it is missing, skips loudly elsewhere).
func dynamoEndpoint(t testing.TB) string { return testenv.DynamoEndpoint(t) }

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// openTable opens a store on a fresh table (message_test_<random>) that is deleted when
// the test ends.
func openTable(t testing.TB) *Store {
	t.Helper()
	ep := dynamoEndpoint(t)
	table := testenv.UniqueName(t, "message_test")
	s := openOn(t, ep, table)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateTable(ctx); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		if err := s.deleteTable(context.Background()); err != nil {
			t.Errorf("deleting table %s: %v", table, err)
		}
	})
	return s
}

// openOn opens another Store (another "replica") on an existing table; each
// tune changes the client's options (see open).
func openOn(t testing.TB, endpoint, table string, tune ...func(*dynamodb.Options)) *Store {
	t.Helper()
	s, err := open(context.Background(), Options{
		Table: table, Endpoint: endpoint,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, tune...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func msg(session, client, text string) chat.Message {
	return chat.Message{
		SessionID: session, ClientID: client, From: "host@example.com", To: "guest@example.com",
		Room: "lobby", Kind: chat.KindChat, Text: text,
	}
}

func mustAppend(t testing.TB, s *Store, m chat.Message) (chat.Message, bool) {
	t.Helper()
	got, dup, err := s.Append(context.Background(), m)
	if err != nil {
		t.Fatalf("Append(%s): %v", m.ClientID, err)
	}
	return got, dup
}

// TestConformance runs the shared MessageStore suite, each case on a fresh table.
func TestConformance(t *testing.T) {
	chattest.RunMessageStore(t, func(t *testing.T) chat.MessageStore { return openTable(t) })
}

func TestAppendAndRead(t *testing.T) {
	s := openTable(t)
	ctx := context.Background()
	sess := chat.NewSessionID()
	at := time.Date(2026, 11, 27, 13, 0, 0, 123456789, time.FixedZone("X", 3600))
	first := msg(sess, "c1", "hello")
	first.CreatedAt = at
	got, dup := mustAppend(t, s, first)
	if dup || got.Seq != 1 || !got.CreatedAt.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("first Append = seq %d dup %v at %v", got.Seq, dup, got.CreatedAt)
	}
	second, _ := mustAppend(t, s, msg(sess, "c2", "bye"))
	if second.Seq != 2 || second.CreatedAt.IsZero() {
		t.Fatalf("second Append = seq %d at %v", second.Seq, second.CreatedAt)
	}
	all, err := s.Messages(ctx, sess, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0] != got || all[1] != second {
		t.Fatalf("Messages = %+v\nwant %+v, %+v", all, got, second)
	}
	if all[0].CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt not in UTC: %v", all[0].CreatedAt)
	}
	if last, err := s.LastSeq(ctx, sess); err != nil || last != 2 {
		t.Fatalf("LastSeq = %d, %v; want 2", last, err)
	}
}

func TestSeedAttributeNames(t *testing.T) {
	s := openTable(t)
	sess := chat.NewSessionID()
	mustAppend(t, s, msg(sess, "c1", "hello"))
	out, err := s.client.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &s.table, Key: key(sess, 1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sessionId", "seq", "fromEmail", "toEmail", "chatRoom", "createdDatetime", "message", "kind", "clientId"} {
		if _, ok := out.Item[name]; !ok {
			t.Errorf("item lacks attribute %q", name)
		}
	}
	created := out.Item["createdDatetime"].(*types.AttributeValueMemberS).Value
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z", created); err != nil {
		t.Errorf("createdDatetime %q is not RFC 3339 UTC with microseconds", created)
	}
}

func TestDuplicateClientID(t *testing.T) {
	s := openTable(t)
	sess := chat.NewSessionID()
	orig, _ := mustAppend(t, s, msg(sess, "c1", "hello"))
	mustAppend(t, s, msg(sess, "c2", "second"))
	again, dup := mustAppend(t, s, msg(sess, "c1", "hello (resent)"))
	if !dup || again != orig {
		t.Fatalf("resend = %+v dup %v; want %+v dup true", again, dup, orig)
	}
	other, dup := mustAppend(t, s, msg(chat.NewSessionID(), "c1", "same id, other session"))
	if dup || other.Seq != 1 {
		t.Fatalf("same client id in another session = seq %d dup %v; want seq 1, new", other.Seq, dup)
	}
	if last, _ := s.LastSeq(context.Background(), sess); last != 2 {
		t.Fatalf("LastSeq = %d; want 2", last)
	}
}

// TestAppendWaitHeedsContext: an Append queued behind another of the same session
// gives up when its context ends instead of waiting for the turn forever.
func TestAppendWaitHeedsContext(t *testing.T) {
	s := openTable(t)
	sess := chat.NewSessionID()
	st := s.seqs.acquire(sess)
	st.turn <- struct{}{} // another Append's turn, never ending
	defer func() { <-st.turn; s.seqs.release(st) }()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := s.Append(ctx, msg(sess, "c1", "x")); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Append behind a stuck one = %v; want %s", err, chat.EUnavailable)
	}
}

func TestAppendWithoutClientID(t *testing.T) {
	s := openTable(t)
	sess := chat.NewSessionID()
	for i := range 3 {
		got, dup := mustAppend(t, s, msg(sess, "", "system notice"))
		if dup || got.Seq != int64(i+1) {
			t.Fatalf("Append %d = seq %d dup %v", i, got.Seq, dup)
		}
	}
}

// TestConcurrentReplicas appends to one session from three replicas at once, every
// client id sent by two of them: seqs must run 1..n with each client id exactly once.
func TestConcurrentReplicas(t *testing.T) {
	s := openTable(t)
	ep := dynamoEndpoint(t)
	replicas := []*Store{s, openOn(t, ep, s.table), openOn(t, ep, s.table)}
	sess := chat.NewSessionID()
	const clients = 60
	var wg sync.WaitGroup
	results := make(chan chat.Message, 2*clients)
	errs := make(chan error, 2*clients)
	for i := range clients {
		for k := range 2 {
			wg.Add(1)
			go func(r *Store) {
				defer wg.Done()
				got, _, err := r.Append(context.Background(), msg(sess, fmt.Sprintf("c%d", i), fmt.Sprintf("text %d", i)))
				if err != nil {
					errs <- err
					return
				}
				results <- got
			}(replicas[(i+k)%len(replicas)])
		}
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	seqOfClient := map[string]int64{}
	for got := range results {
		if prev, ok := seqOfClient[got.ClientID]; ok && prev != got.Seq {
			t.Fatalf("client %s answered with seq %d and %d", got.ClientID, prev, got.Seq)
		}
		seqOfClient[got.ClientID] = got.Seq
	}
	stored, err := s.Messages(context.Background(), sess, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != clients {
		t.Fatalf("stored %d messages; want %d", len(stored), clients)
	}
	seen := map[string]bool{}
	for i, m := range stored {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: gap or duplicate seq", i, m.Seq)
		}
		if seen[m.ClientID] {
			t.Fatalf("client id %s stored twice", m.ClientID)
		}
		seen[m.ClientID] = true
		if seqOfClient[m.ClientID] != m.Seq {
			t.Fatalf("client %s stored at %d but answered %d", m.ClientID, m.Seq, seqOfClient[m.ClientID])
		}
	}
}

func TestMessagesPaging(t *testing.T) {
	s := openTable(t)
	s.pageSize = 4
	sess := chat.NewSessionID()
	for i := range 23 {
		mustAppend(t, s, msg(sess, fmt.Sprintf("c%d", i), "x"))
	}
	tests := []struct {
		name         string
		after        int64
		limit        int
		first, count int64
	}{
		{"All", 0, 0, 1, 23},
		{"NegativeAfter", -5, 0, 1, 23},
		{"Limit", 0, 10, 1, 10},
		{"AfterAndLimit", 5, 10, 6, 10},
		{"LimitPastEnd", 20, 10, 21, 3},
		{"AfterEnd", 23, 10, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Messages(context.Background(), sess, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(got)) != tc.count {
				t.Fatalf("got %d messages; want %d", len(got), tc.count)
			}
			for i, m := range got {
				if m.Seq != tc.first+int64(i) {
					t.Fatalf("message %d has seq %d; want %d", i, m.Seq, tc.first+int64(i))
				}
			}
		})
	}
}

func TestDeleteSession(t *testing.T) {
	s := openTable(t)
	s.pageSize = 7
	ctx := context.Background()
	sess, keep := chat.NewSessionID(), chat.NewSessionID()
	for i := range 60 {
		mustAppend(t, s, msg(sess, fmt.Sprintf("c%d", i), "x"))
	}
	mustAppend(t, s, msg(keep, "k", "stays"))
	n, err := s.DeleteSession(ctx, sess)
	if err != nil || n != 60 {
		t.Fatalf("DeleteSession = %d, %v; want 60", n, err)
	}
	out, err := s.client.Query(ctx, &dynamodb.QueryInput{
		TableName: &s.table, KeyConditionExpression: aws.String("#s = :s"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSession},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: sess}},
	})
	if err != nil || len(out.Items) != 0 {
		t.Fatalf("partition after delete: %d items, %v; want none", len(out.Items), err)
	}
	if n, err := s.DeleteSession(ctx, sess); err != nil || n != 0 {
		t.Fatalf("second DeleteSession = %d, %v; want 0", n, err)
	}
	if last, _ := s.LastSeq(ctx, keep); last != 1 {
		t.Fatalf("other session's LastSeq = %d; want 1", last)
	}
	again, dup := mustAppend(t, s, msg(sess, "c0", "after purge"))
	if dup || again.Seq != 1 {
		t.Fatalf("Append after purge = seq %d dup %v; want 1, new", again.Seq, dup)
	}
}

func TestPingAndCreateTable(t *testing.T) {
	s := openTable(t)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.CreateTable(ctx); err != nil {
		t.Fatalf("second CreateTable: %v", err)
	}
	missing := openOn(t, dynamoEndpoint(t), "no_such_table_"+randomSuffix())
	if err := missing.Ping(ctx); !chat.IsCode(err, chat.EUnavailable) {
		t.Fatalf("Ping of a missing table = %v; want %s", err, chat.EUnavailable)
	}
}

// BenchmarkAppend measures Append on the DynamoDB stand-in: one session (each Append
// waits for the previous, one conditional write each) and many sessions at once.
func BenchmarkAppend(b *testing.B) {
	s := openTable(b)
	b.Run("OneSession", func(b *testing.B) {
		sess := chat.NewSessionID()
		for i := 0; b.Loop(); i++ {
			mustAppend(b, s, msg(sess, fmt.Sprintf("c%d", i), "hello"))
		}
	})
	b.Run("ParallelSessions", func(b *testing.B) {
		b.SetParallelism(8) // 8 goroutines per CPU, each appending to its own session
		var mu sync.Mutex
		n := 0
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			n++
			sess := fmt.Sprintf("bench-%d-%s", n, randomSuffix())
			mu.Unlock()
			for i := 0; pb.Next(); i++ {
				mustAppend(b, s, msg(sess, fmt.Sprintf("c%d", i), "hello"))
			}
		})
	})
}
