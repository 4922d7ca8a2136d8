package sqlstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"parley/internal/chat"
)

// The message log (SQLite). An append is made durable by the appending goroutine
// itself: one record copied to the end of the log's current segment file, mapped into
// memory (logMap; one write(2) where segments are not mapped), under the writer's
// log lock, with no hand-off to another goroutine and no SQLite transaction on the
// way. The kernel's page cache holds the record from then on, so a crash of
// the process cannot lose it, which is the guarantee SQLite gives a WAL commit with
// synchronous(NORMAL); the checkpointer syncs the log each time it syncs the database,
// so a power cut loses no more than it would of the database itself.
//
// The messages wait in memory (pendingSet) until a merge moves them into
// message_chunks, as before; a segment file is deleted once every message in it is
// merged or deleted and a checkpoint has synced those merges (so a power cut cannot
// take the merge back after its segment is gone), and only in order, oldest first, so
// a drop record outlives every older record of its chat.
//
// A record is a 4-byte length and a 4-byte CRC-32C of its body, both little-endian,
// then the body: a kind byte (logMessage, logDrop) and, for a message, its encoding
// as a one-message pending batch (appendPending); for a drop, the session id. At
// start the segments are read in order; a record that is cut short or fails its CRC
// ends its segment (the tail of a write a power cut interrupted).
const (
	logMessage byte = 1
	logDrop    byte = 2

	logSegmentBytes = 8 << 20 // a segment is closed and a new one begun past this
	logHeader       = 8
	logMaxRecord    = 1 << 24 // far above any message; a larger length is corruption
	// logMaxMessageRecord is room past logSegmentBytes for the record that crosses it
	// (a message's text and ids are bounded far below this by the chat layer).
	logMaxMessageRecord = 1 << 20
)

var logCRC = crc32.MakeTable(crc32.Castagnoli)

// msgLog is the message log of one database file: the directory <file>-log holding
// segment files named by their number. Its methods are called under the writer's
// log lock (sqliteWriter.lmu), except where noted.
type msgLog struct {
	dir  string
	cur  logFile // the current segment (f nil once closed), and its length
	seg  int64   // its number
	buf  []byte  // the record being written
	segs []*logSegment
	// unsynced are the segments closed to appends since the checkpointer last
	// synced them; it syncs, unmaps and closes them.
	unsynced []logFile
	// next brings the segment after the current one, made ready by a goroutine of
	// its own once the current one is half full (prepareNext), so that rotate, under
	// the log lock, only swaps files: creating, allocating and syncing a segment's
	// directory entry takes milliseconds, and every append would wait for it. Nil
	// while none is on its way.
	next chan nextSegment
	// fs are the file system calls that take milliseconds, which a test may slow or
	// fail: syncing the directory of a new segment, deleting an old one.
	fs logFS
}

// logFS is how the log syncs its directory and deletes segment files.
type logFS struct {
	syncDir func(dir string) error
	remove  func(path string) error
}

// nextSegment is a segment file made ready ahead of its turn, or why it could not be.
type nextSegment struct {
	id int64
	logFile
	err error
}

// logFile is a segment file, its mapping (nil if not mapped) and the length of its
// records, as far as known to whoever holds it.
type logFile struct {
	f    *os.File
	m    *logMap
	size int64
}

// sync makes the file's records durable: the mapped range they fill (the pages ahead
// hold only zeros, and stay writable), or the whole file.
func (lf logFile) sync() error {
	if lf.m != nil {
		return lf.m.sync(lf.size)
	}
	return lf.f.Sync()
}

// syncClose syncs the file, unmaps it and closes it.
func (lf logFile) syncClose() error {
	err := lf.sync()
	if lf.m != nil {
		lf.m.unmap()
	}
	if cerr := lf.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// logSegment is one segment file and the pending batches that hold its messages.
type logSegment struct {
	id     int64
	live   int  // its message records neither merged nor dropped, counted from their write
	sealed bool // no more records go to it
	synced bool // emptied and then covered by a checkpoint: may be deleted
}

// openMsgLog opens (creating) the log directory of the database file path.
func openMsgLog(path string) (*msgLog, error) {
	l := &msgLog{dir: path + "-log", fs: logFS{syncDir: syncDir, remove: os.Remove}}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "create the message log %s", l.dir)
	}
	return l, nil
}

// segments lists the segment numbers present, in order.
func (l *msgLog) segments() ([]int64, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		id, err := strconv.ParseInt(name, 16, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (l *msgLog) path(id int64) string { return filepath.Join(l.dir, fmt.Sprintf("%016x.seg", id)) }

// replay reads every segment in order, calling msg for each message and drop for
// each drop, with the segment's number. It returns the segments read, oldest first;
// new records then go to a new segment after them.
func (l *msgLog) replay(msg func(seg int64, m chat.Message), drop func(seg int64, session string)) ([]int64, error) {
	ids, err := l.segments()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		b, err := os.ReadFile(l.path(id))
		if err != nil {
			return nil, err
		}
		for len(b) >= logHeader {
			n := binary.LittleEndian.Uint32(b)
			if n == 0 || n > logMaxRecord || int(n) > len(b)-logHeader {
				break
			}
			body := b[logHeader : logHeader+int(n)]
			if crc32.Checksum(body, logCRC) != binary.LittleEndian.Uint32(b[4:]) {
				break
			}
			b = b[logHeader+int(n):]
			switch body[0] {
			case logMessage:
				msgs, err := decodePending(body[1:])
				if err != nil || len(msgs) != 1 {
					return nil, fmt.Errorf("message log segment %x: a record does not decode", id)
				}
				msg(id, msgs[0])
			case logDrop:
				drop(id, string(body[1:]))
			}
		}
		l.seg = max(l.seg, id)
	}
	return ids, nil
}

// start begins a new segment after every one present; seen are the segments replay
// found, tracked from now on like the new one (their batches attach in replay).
func (l *msgLog) start(seen []*logSegment) error {
	l.segs = seen
	for _, s := range seen {
		s.sealed = true
	}
	return l.rotate()
}

// rotate closes the current segment and begins the next: the one prepareNext made
// ready, if it is on its way, or a new one made here.
func (l *msgLog) rotate() error {
	if l.cur.f != nil {
		l.unsynced = append(l.unsynced, l.cur)
		l.cur = logFile{}
		l.segs[len(l.segs)-1].sealed = true
	}
	id := l.seg + 1
	var lf logFile
	if l.next != nil {
		ready := <-l.next // made ready meanwhile, unless the segment filled very fast
		l.next = nil
		if ready.err == nil && ready.id == id {
			lf = ready.logFile
		} else if ready.f != nil {
			l.discard(ready)
		}
	}
	if lf.f == nil {
		var err error
		if lf, err = l.create(id, l.fs); err != nil {
			return err
		}
	}
	l.cur, l.seg = lf, id
	l.segs = append(l.segs, &logSegment{id: id})
	return nil
}

// prepareNext starts making the next segment ready, once the current one is half
// full and none is on its way.
func (l *msgLog) prepareNext() {
	if l.next != nil || l.cur.size < logSegmentBytes/2 {
		return
	}
	next := make(chan nextSegment, 1)
	l.next = next
	id, fs := l.seg+1, l.fs
	go func() {
		lf, err := l.create(id, fs)
		next <- nextSegment{id: id, logFile: lf, err: err}
	}()
}

// create makes segment id ready for records: created, its blocks allocated up
// front (so a record is written inside the file's length, and the file system has
// no size to update for each record; the rest reads as zeros, which replay takes
// for the end), mapped and faulted in (mapSegment), and its directory entry synced.
// It only reads l.dir, so it may run beside the log lock.
func (l *msgLog) create(id int64, fs logFS) (logFile, error) {
	f, err := os.OpenFile(l.path(id), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return logFile{}, err
	}
	if err := preallocate(f, logSegmentBytes+logMaxMessageRecord); err != nil {
		_ = f.Close()
		_ = os.Remove(l.path(id))
		return logFile{}, err
	}
	if err := fs.syncDir(l.dir); err != nil {
		_ = f.Close()
		return logFile{}, err
	}
	return logFile{f: f, m: mapSegment(f, logSegmentBytes+logMaxMessageRecord)}, nil
}

// discard closes and deletes a segment made ready but not used: it holds no record.
func (l *msgLog) discard(s nextSegment) {
	if s.m != nil {
		s.m.unmap()
	}
	_ = s.f.Close()
	_ = os.Remove(l.path(s.id))
}

// current is the segment records go to now.
func (l *msgLog) current() *logSegment { return l.segs[len(l.segs)-1] }

// messageRecord returns buf holding m as one framed record. It needs no lock: an
// append encodes its record before it takes the log's.
func messageRecord(buf []byte, m *chat.Message) []byte {
	buf = append(buf[:0], 0, 0, 0, 0, 0, 0, 0, 0) // the header, set by frameRecord
	buf = append(buf, logMessage, pendingVersion)
	return frameRecord(appendPending(buf, m))
}

// frameRecord sets the header of rec, a record's header space and body.
func frameRecord(rec []byte) []byte {
	body := rec[logHeader:]
	binary.LittleEndian.PutUint32(rec, uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(body, logCRC))
	return rec
}

// appendMessage writes rec, a message record (messageRecord), and returns the segment
// that holds it, with one more record counted live: the segment is kept until the
// message is merged or dropped and the writer counts it out (sqliteWriter.unlive).
func (l *msgLog) appendMessage(rec []byte) (*logSegment, error) {
	seg, err := l.write(rec)
	if err == nil {
		seg.live++
	}
	return seg, err
}

// appendDrop writes a drop record for session: its earlier records are dead.
func (l *msgLog) appendDrop(session string) error {
	l.buf = append(l.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0) // the header, set by frameRecord
	l.buf = append(l.buf, logDrop)
	l.buf = append(l.buf, session...)
	_, err := l.write(frameRecord(l.buf))
	return err
}

// write appends the framed record rec to the current segment.
func (l *msgLog) write(rec []byte) (*logSegment, error) {
	if l.cur.f == nil {
		return nil, errors.New("the message log is closed")
	}
	if l.cur.size >= logSegmentBytes {
		if err := l.rotate(); err != nil {
			return nil, err
		}
	}
	if err := l.cur.append(rec); err != nil {
		return nil, err
	}
	l.prepareNext()
	return l.current(), nil
}

// append writes rec after the file's records: copied into the mapping, or in one
// write(2). A failed copy or a short or failed write is overwritten with zeros and
// the length stays, so the next record goes where it began and the segment never
// holds a partial record that a later record would follow.
func (lf *logFile) append(rec []byte) error {
	if lf.m != nil {
		if err := lf.m.put(lf.size, rec); err != nil {
			_ = lf.m.put(lf.size, make([]byte, len(rec)))
			return err
		}
	} else if n, err := lf.f.WriteAt(rec, lf.size); err != nil {
		if n > 0 { // zeros again, so replay stops here rather than at a torn record
			_, _ = lf.f.WriteAt(make([]byte, n), lf.size)
		}
		return err
	}
	lf.size += int64(len(rec))
	return nil
}

// beforeCheckpoint is called by the checkpointer, under the log lock, before a
// checkpoint: it returns the files to sync (the segments closed since: the
// checkpointer syncs, unmaps and closes them, and the current one with the length
// written so far) and the segments already emptied, which the checkpoint's merges
// cover once it has copied and synced every frame (covered).
func (l *msgLog) beforeCheckpoint() (files []logFile, current logFile, emptied []*logSegment) {
	files, l.unsynced = l.unsynced, nil
	for _, s := range l.segs {
		// A message's record counts live from its write, under this lock, until the
		// commit that merged or dropped it: none live means every merge is committed.
		if s.sealed && s.live == 0 && !s.synced {
			emptied = append(emptied, s)
		}
	}
	return files, l.cur, emptied
}

// covered marks the segments synced and takes those at the front off the log,
// oldest first, for remove: a later segment waits for every older one, so a drop
// record outlives the records it drops. Called under the log lock; the files are
// deleted after it is let go (an unlink of a segment's allocated blocks takes
// milliseconds).
func (l *msgLog) covered(emptied []*logSegment) []*logSegment {
	for _, s := range emptied {
		s.synced = true
	}
	i := 0
	for i < len(l.segs) && l.segs[i].synced {
		i++
	}
	gone := slices.Clone(l.segs[:i])
	clear(l.segs[:i])
	l.segs = l.segs[i:]
	return gone
}

// remove deletes the files of the segments covered took off the log, in order, and
// returns those it could not delete, the first failure and every later one, which
// keep their order for restore: a segment is only deleted once every older one is.
// It runs without the log lock, on the checkpointer's goroutine alone, with the
// log's fs as read under the lock.
func (l *msgLog) remove(gone []*logSegment, fs logFS) []*logSegment {
	for i, s := range gone {
		if err := fs.remove(l.path(s.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return gone[i:]
		}
	}
	return nil
}

// restore puts segments remove could not delete back at the front of the log, for
// the next checkpoint to try again. Called under the log lock.
func (l *msgLog) restore(kept []*logSegment) { l.segs = append(kept, l.segs...) }

// close syncs and closes every segment file still open, and deletes the current one
// if nothing was written to it (a short run, such as `parley purge`, leaves no file).
func (l *msgLog) close() error {
	var err error
	if l.next != nil {
		if ready := <-l.next; ready.f != nil {
			l.discard(ready)
		}
		l.next = nil
	}
	if l.cur.f != nil && l.cur.size == 0 {
		if rerr := os.Remove(l.path(l.seg)); rerr != nil {
			err = rerr
		}
	}
	for _, lf := range append(l.unsynced, l.cur) {
		if lf.f == nil {
			continue
		}
		if serr := lf.syncClose(); err == nil {
			err = serr
		}
	}
	l.cur, l.unsynced = logFile{}, nil
	return err
}

// syncDir makes a directory's entries (a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
