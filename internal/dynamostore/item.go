package dynamostore

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"parley/internal/chat"
)

// timeLayout is RFC 3339 in UTC with microseconds, the precision every Parley store
// keeps, so createdDatetime sorts as text and reads back equal to what was written.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// messageItem is one message as stored, with the original design's attribute names. Empty
// optional attributes are left out rather than stored as empty strings.
type messageItem struct {
	SessionID string `dynamodbav:"sessionId"`
	Seq       int64  `dynamodbav:"seq"`
	ClientID  string `dynamodbav:"clientId,omitempty"`
	From      string `dynamodbav:"fromEmail,omitempty"`
	To        string `dynamodbav:"toEmail,omitempty"`
	Room      string `dynamodbav:"chatRoom,omitempty"`
	Kind      string `dynamodbav:"kind,omitempty"`
	Text      string `dynamodbav:"message,omitempty"`
	CreatedAt string `dynamodbav:"createdDatetime"`
	// WriteID is random per Append call: when the SDK retries a PutItem whose first
	// attempt did land, the retry's condition fails, and WriteID shows the item is ours.
	WriteID string `dynamodbav:"writeId,omitempty"`
}

func toItem(m chat.Message, writeID string) (map[string]types.AttributeValue, error) {
	it := messageItem{
		SessionID: m.SessionID, Seq: m.Seq, ClientID: m.ClientID, From: m.From, To: m.To,
		Room: m.Room, Kind: string(m.Kind), Text: m.Text,
		CreatedAt: m.CreatedAt.UTC().Format(timeLayout), WriteID: writeID,
	}
	av, err := attributevalue.MarshalMap(it)
	if err != nil {
		return nil, chat.Wrap(chat.EInternal, err, "encoding message item")
	}
	return av, nil
}

func fromItem(av map[string]types.AttributeValue) (chat.Message, error) {
	m, _, err := decodeItem(av)
	return m, err
}

// decodeItem reads a message item and the write id it was stored with.
func decodeItem(av map[string]types.AttributeValue) (chat.Message, string, error) {
	var it messageItem
	if err := attributevalue.UnmarshalMap(av, &it); err != nil {
		return chat.Message{}, "", chat.Wrap(chat.EInternal, err, "decoding message item")
	}
	at, err := time.Parse(time.RFC3339Nano, it.CreatedAt)
	if err != nil {
		return chat.Message{}, "", chat.Wrap(chat.EInternal, err, "decoding createdDatetime of message %d", it.Seq)
	}
	return chat.Message{
		SessionID: it.SessionID, Seq: it.Seq, ClientID: it.ClientID, From: it.From, To: it.To,
		Room: it.Room, Kind: chat.Kind(it.Kind), Text: it.Text, CreatedAt: at.UTC(),
	}, it.WriteID, nil
}

// newWriteID returns a random id for one Append call.
func newWriteID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// key returns the primary key of the item at seq in a session's partition.
func key(sessionID string, seq int64) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrSession: &types.AttributeValueMemberS{Value: sessionID},
		attrSeq:     &types.AttributeValueMemberN{Value: strconv.FormatInt(seq, 10)},
	}
}

// seqOf reads the sort key of an item.
func seqOf(av map[string]types.AttributeValue) (int64, error) {
	n, ok := av[attrSeq].(*types.AttributeValueMemberN)
	if !ok {
		return 0, chat.Errorf(chat.EInternal, "item without a numeric %s", attrSeq)
	}
	seq, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return 0, chat.Wrap(chat.EInternal, err, "item %s %q", attrSeq, n.Value)
	}
	return seq, nil
}

func numberValue(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
