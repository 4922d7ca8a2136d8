package transcript_test

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"parley/internal/chat"
	"parley/internal/transcript"
)

// FuzzCSVWriter writes a message with any text and client id as a transcript row and
// reads the file back with encoding/csv: there is exactly one row after the header,
// and removing the formula guard gives back the text (every line break as LF) and the
// id, so no text can add a row, a column, or run as a formula. Seeds are in
// testdata/fuzz/FuzzCSVWriter.
func FuzzCSVWriter(f *testing.F) {
	for _, s := range []string{"hello", "", "=1+2", "+x", "-x", "@SUM(A1)", "\t=x", "\r=x", "a,b", `"quoted"`,
		"line\nbreak", "cr\ronly", "crlf\r\nend", "\r\n", "\"\r\n\"", "ünïcødé 😀", "'already"} {
		f.Add(s, "c-1")
	}
	f.Fuzz(func(t *testing.T, text, id string) {
		if !utf8.ValidString(text) || chat.ValidateClientID(id) != nil {
			t.Skip("the protocol refuses such a text or id before it is stored")
		}
		var buf bytes.Buffer
		w, err := transcript.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		m := chat.Message{SessionID: "s", Seq: 1, ClientID: id, From: "a@example.org", To: "b@example.org",
			Room: "r", Kind: chat.KindChat, Text: text, CreatedAt: time.Unix(1, 0).UTC()}
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
		if err != nil {
			t.Fatalf("the transcript does not read back: %v\n%q", err, buf.Bytes())
		}
		if len(rows) != 2 || len(rows[1]) != len(transcript.Header) {
			t.Fatalf("%d rows (%v), want the header and one row of %d cells", len(rows), rows, len(transcript.Header))
		}
		wantText := strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\r", "\n")
		if got := unguard(rows[1][7], text); got != wantText {
			t.Fatalf("text %q read back as %q", wantText, got)
		}
		if got := unguard(rows[1][1], id); got != id {
			t.Fatalf("id %q read back as %q", id, got)
		}
		if c := rows[1][7]; c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			t.Fatalf("cell %q starts like a formula", c)
		}
	})
}

// unguard removes the apostrophe SafeCell adds before a cell that starts like a
// formula (it checks the original value, so a text that starts with an apostrophe of
// its own keeps it).
func unguard(cell, original string) string {
	if transcript.SafeCell(original) != original {
		return strings.TrimPrefix(cell, "'")
	}
	return cell
}
