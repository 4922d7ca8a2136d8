// Package transcript turns a chat session into its CSV transcript and runs the two
// background jobs of the end of a chat: the export (CSV → archive → email → completed)
// and the nightly purge of archived messages. Both are written to be run any number of
// times: each step first checks what the session already records, so a retry after a
// crash or a failing dependency finishes the work without repeating what was done.
package transcript

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"parley/internal/chat"
)

// Header is the transcript's first row. The columns are a contract with whoever opens
// the file (people and spreadsheets), so they never change order.
var Header = []string{"seq", "message_id", "created_at", "from_email", "to_email", "chat_room", "kind", "message"}

// PageSize is how many messages are read from the message store at a time, so a long
// chat is streamed rather than loaded whole.
const PageSize = 1000

// TimeLayout is how times are written: ISO 8601 (RFC 3339) in UTC, to the second.
// The file is for people and spreadsheets; seq, not the time, orders the messages.
const TimeLayout = "2006-01-02T15:04:05Z"

// BOM is the UTF-8 byte order mark the file starts with. Without it, Excel reads the
// file as the system's legacy code page and garbles every emoji, dash and accent.
const BOM = "\uFEFF"

// KindEnded is the kind of the transcript's last row when the chat has ended: who
// ended it, and when. It is not a stored message, so its seq and message_id are empty.
const KindEnded = "ended"

// Summary describes a written transcript: what the archive must hold to be confirmed.
type Summary struct {
	Messages int64
	Size     int64
	SHA256   string // lower-case hex
}

// Writer writes transcript rows as RFC 4180 CSV (CRLF line ends, quoted where needed)
// and hashes the bytes as they are written.
type Writer struct {
	csv   *csv.Writer
	count *countingWriter
	hash  hash.Hash
	rows  int64
	row   []string
}

// NewWriter returns a Writer onto w and writes the byte order mark and the header row.
func NewWriter(w io.Writer) (*Writer, error) {
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	tw := &Writer{csv: csv.NewWriter(cw), count: cw, hash: h, row: make([]string, len(Header))}
	tw.csv.UseCRLF = true
	if _, err := io.WriteString(cw, BOM); err != nil {
		return nil, err
	}
	if err := tw.csv.Write(Header); err != nil {
		return nil, err
	}
	return tw, nil
}

// Write adds one message as a row.
func (w *Writer) Write(m chat.Message) error {
	w.row[0] = strconv.FormatInt(m.Seq, 10)
	w.row[1] = SafeCell(m.ClientID)
	w.row[2] = m.CreatedAt.UTC().Format(TimeLayout)
	w.row[3] = SafeCell(m.From)
	w.row[4] = SafeCell(m.To)
	w.row[5] = SafeCell(m.Room)
	w.row[6] = SafeCell(string(m.Kind))
	w.row[7] = lineBreaks(SafeCell(m.Text))
	w.rows++
	return w.csv.Write(w.row)
}

// WriteEnd adds the last row of an ended chat: kind "ended", from the person who
// ended it, to the other person, at the end time. Nothing is written for a chat in
// progress.
func (w *Writer) WriteEnd(s *chat.Session) error {
	if !s.Ended() || s.EndedAt.IsZero() {
		return nil
	}
	text := "Chat ended by " + s.EndedBy
	switch {
	case s.EndedBy == "": // ended by Parley itself (a room merged by an upgrade)
		text = "Chat ended by Parley"
	case s.ParticipantEmail == "":
		text = "Chat ended before anyone joined"
	}
	w.row[0], w.row[1] = "", ""
	w.row[2] = s.EndedAt.UTC().Format(TimeLayout)
	w.row[3] = SafeCell(s.EndedBy)
	w.row[4] = ""
	if s.EndedBy != "" {
		w.row[4] = SafeCell(s.Peer(s.EndedBy))
	}
	w.row[5] = SafeCell(s.Room)
	w.row[6] = KindEnded
	w.row[7] = SafeCell(text)
	return w.csv.Write(w.row)
}

// Close flushes what is buffered and returns the summary of the whole file.
func (w *Writer) Close() (Summary, error) {
	w.csv.Flush()
	if err := w.csv.Error(); err != nil {
		return Summary{}, err
	}
	return Summary{Messages: w.rows, Size: w.count.n, SHA256: hex.EncodeToString(w.hash.Sum(nil))}, nil
}

// SafeCell defuses spreadsheet formulas: a cell starting with '=', '+', '-', '@', tab
// or carriage return gets a leading apostrophe, so a message such as
// "=HYPERLINK(...)" is shown as text instead of being run (OWASP "CSV injection").
func SafeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// lineBreaks turns every line break in a message (CRLF, LF or a lone CR) into LF,
// which the RFC 4180 writer emits as CRLF inside the quoted cell. encoding/csv would
// otherwise drop a lone CR, silently joining two lines.
func lineBreaks(s string) string {
	if !strings.ContainsRune(s, '\r') {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// Write streams the session's messages, oldest first, page by page from the message
// store into w as a transcript, ends it with the row for the end of the chat, and
// returns its summary. It checks that seqs run without a gap, so a transcript never
// silently misses a message.
//
// A message sent before the other person entered was stored without a recipient; its
// to_email is the person who then joined the chat (the only one it could be for), so
// every row of a chat that had two people names its recipient.
func Write(ctx context.Context, msgs chat.MessageStore, s *chat.Session, w io.Writer) (Summary, error) {
	sessionID := s.ID
	tw, err := NewWriter(w)
	if err != nil {
		return Summary{}, err
	}
	var after int64
	for {
		page, err := msgs.Messages(ctx, sessionID, after, PageSize)
		if err != nil {
			return Summary{}, err
		}
		for _, m := range page {
			if m.Seq != after+1 {
				return Summary{}, chat.Errorf(chat.EInternal, "session %s: message seq %d follows %d", sessionID, m.Seq, after)
			}
			if m.To == "" && m.Kind != chat.KindSystem {
				m.To = s.Peer(m.From)
			}
			if err := tw.Write(m); err != nil {
				return Summary{}, err
			}
			after = m.Seq
		}
		if len(page) < PageSize {
			if err := tw.WriteEnd(s); err != nil {
				return Summary{}, err
			}
			return tw.Close()
		}
	}
}

// FileName is the name a transcript is downloaded as: room and chat start date, which
// people recognise; the room name is already limited to [A-Za-z0-9_-].
func FileName(s *chat.Session) string {
	day := s.InitiatedAt
	if day.IsZero() {
		day = time.Now()
	}
	return "parley-" + s.Room + "-" + day.UTC().Format("2006-01-02") + ".csv"
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

// Write implements io.Writer.
func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
