package transcript

import (
	"context"
	"errors"
	"time"

	"parley/internal/chat"
)

// purgePage is how many sessions are read from the session store at a time.
const purgePage = 100

// Due is a session the purge would consider, and whether its archive is confirmed.
type Due struct {
	Session   *chat.Session
	Confirmed bool   // the archive holds the recorded key, size and SHA-256
	Reason    string // why not, when not confirmed
}

// PurgeReport counts what one purge run did.
type PurgeReport struct {
	Purged      int // messages deleted and purge recorded
	Unconfirmed int // archive missing or altered: kept, logged
	Failed      int // a store or archive error: kept, retried next run
}

// Purge deletes the messages of every completed session whose archive is confirmed
// and records the purge time (chat.Jobs). It takes everything due, so a missed night
// is caught up by the next run; purging twice is harmless.
func (e *Exporter) Purge(ctx context.Context, now time.Time) (int, error) {
	r, err := e.PurgeAll(ctx, now, nil)
	return r.Purged, err
}

// PurgeAll is Purge with a full report; progress, when set, is called after each
// session (for the CLI's progress bar). A session that cannot be purged is skipped,
// not retried in this run; errors are joined and returned at the end.
func (e *Exporter) PurgeAll(ctx context.Context, now time.Time, progress func(Due, error)) (PurgeReport, error) {
	var r PurgeReport
	var errs []error
	err := e.eachDue(ctx, func(s *chat.Session) bool {
		d, err := e.PurgeSession(ctx, s, now)
		switch {
		case err != nil:
			r.Failed++
			errs = append(errs, err)
		case d.Confirmed:
			r.Purged++
		default:
			r.Unconfirmed++
		}
		if progress != nil {
			progress(d, err)
		}
		return err == nil && d.Confirmed
	})
	if len(errs) > 10 {
		errs = errs[:10]
	}
	e.log.Info("purge finished", "purged", r.Purged, "unconfirmed", r.Unconfirmed, "failed", r.Failed)
	return r, errors.Join(append(errs, err)...)
}

// PurgeSession purges one session if its archive is confirmed: delete its messages,
// then record the purge. A crash in between is harmless: the next run finds it due
// again, deletes nothing and records the purge.
func (e *Exporter) PurgeSession(ctx context.Context, s *chat.Session, now time.Time) (Due, error) {
	d, err := e.check(ctx, s)
	if err != nil || !d.Confirmed {
		if err == nil {
			e.log.Warn("not purging: transcript not confirmed in archive", "session", s.ID, "reason", d.Reason)
		}
		return d, err
	}
	n, err := e.o.Messages.DeleteSession(ctx, s.ID)
	if err != nil {
		return d, err
	}
	if err := e.o.Sessions.MarkPurged(ctx, s.ID, now); err != nil {
		return d, err
	}
	e.log.Info("messages purged", "session", s.ID, "messages", n)
	return d, nil
}

// DuePurges lists the sessions the purge would consider, each with whether its archive
// is confirmed (for `parley purge --dry-run`). It changes nothing.
func (e *Exporter) DuePurges(ctx context.Context) ([]Due, error) {
	var out []Due
	var firstErr error
	err := e.eachDue(ctx, func(s *chat.Session) bool {
		d, err := e.check(ctx, s)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		out = append(out, d)
		return false
	})
	if err == nil {
		err = firstErr
	}
	return out, err
}

// check confirms a session's archive: it must hold the recorded key with the recorded
// size and SHA-256. Only an unreachable archive is an error.
func (e *Exporter) check(ctx context.Context, s *chat.Session) (Due, error) {
	d := Due{Session: s}
	if s.Status != chat.StatusCompleted || s.Archive.Key == "" {
		d.Reason = "not completed or not archived"
		return d, nil
	}
	got, err := e.o.Archive.Stat(ctx, s.Archive.Key)
	switch {
	case chat.IsCode(err, chat.ENotFound):
		d.Reason = "archive object missing"
	case err != nil:
		d.Reason = "archive unreachable"
		return d, err
	case got.Size != s.Archive.Size || got.SHA256 != s.Archive.SHA256:
		d.Reason = "archive object differs from the recorded size or SHA-256"
	default:
		d.Confirmed = true
	}
	return d, nil
}

// eachDue calls fn once for every session due for purging. fn reports whether the
// session is gone from the due list (purged). The store lists due sessions without a
// cursor, so sessions left due are remembered and the next page asks for that many
// more; the loop ends when a page brings nothing new.
func (e *Exporter) eachDue(ctx context.Context, fn func(*chat.Session) (gone bool)) error {
	kept := make(map[string]bool)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		limit := purgePage + len(kept)
		page, err := e.o.Sessions.SessionsToPurge(ctx, limit)
		if err != nil {
			return err
		}
		fresh := 0
		for _, s := range page {
			if kept[s.ID] {
				continue
			}
			fresh++
			if !fn(s) {
				kept[s.ID] = true
			}
		}
		if fresh == 0 || len(page) < limit {
			return nil
		}
	}
}
