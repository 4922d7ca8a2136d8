package sqlstore

import (
	"context"
	"time"

	"parley/internal/chat"
)

// SQLite checkpoints. In WAL mode every commit appends the pages it changed to the
// WAL, and a checkpoint copies them back into the database file. SQLite's automatic
// checkpoint runs inside whichever commit crosses wal_autocheckpoint pages (1000 by
// default): the writer's merges, which would then stall every few merges while it
// reads, writes and fsyncs, and copy each hot page again for every 1000 frames. A
// checkpoint on a timer, on another connection, runs beside the writer and copies a
// page rewritten by many commits once. The automatic checkpoint stays as a backstop,
// at sqliteAutoCheckpoint pages (about 80 MB of WAL). Under steady writes it is still
// reached: the WAL goes back to its start only when a write transaction begins with
// every frame copied, and the writer commits while the timer's checkpoint runs, so the
// log grows until the backstop checkpoints inside a merge (every few seconds at full
// load; see "The R=1000 tail from the outside" in docs/BENCHMARKS.md). Appends do not
// wait for it: they go to the message log (msglog.go).
//
// Each round also syncs the message log, and once a round has copied every frame (so
// the database file is synced with every merge before it), deletes the log segments
// those merges emptied.
const (
	sqliteCheckpointEvery = time.Second
	sqliteAutoCheckpoint  = "20000"
)

// checkpointer runs PRAGMA wal_checkpoint(PASSIVE) every sqliteCheckpointEvery until
// stop is closed. PASSIVE never waits for readers or the writer: it copies what it
// can, and the next round copies the rest.
type checkpointer struct {
	d    *DB
	stop chan struct{}
	done chan struct{}
}

func startCheckpointer(d *DB) *checkpointer {
	c := &checkpointer{d: d, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer close(c.done)
	chat.Every(c.stop, sqliteCheckpointEvery, func() {
		if err := c.once(); err != nil {
			c.d.log.Warn("WAL checkpoint failed; retrying", "err", err)
		}
	})
}

// once runs one passive checkpoint; after a failure the next tick simply tries again.
func (c *checkpointer) once() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var covered func()
	if c.d.sw != nil {
		covered = c.d.sw.beforeCheckpoint()
	}
	var busy, frames, copied int
	err := c.d.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
	if err == nil && covered != nil && frames == copied {
		covered() // every frame copied and the database synced: the merges are on disk
	}
	return err
}

// close stops the checkpointer and waits for a checkpoint in progress.
func (c *checkpointer) close() {
	close(c.stop)
	<-c.done
}
