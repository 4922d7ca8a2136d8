package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/schollz/progressbar/v3"

	"parley/internal/chat"
	"parley/internal/sqlstore"
	"parley/internal/transcript"
)

// runMigrate creates or updates the SQL tables; with flags it also creates the
// DynamoDB table and the S3 bucket (for a fresh production setup or a local stand-in).
func runMigrate(ctx context.Context, env *environment, args []string) error {
	var createTable, createBucket bool
	c, _, err := loadConfig("migrate", args, env.getenv, env.stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&createTable, "create-table", false, "create the DynamoDB messages table (on-demand capacity) if missing")
		fs.BoolVar(&createBucket, "create-bucket", false, "create the S3 bucket if missing")
	})
	if err != nil {
		return err
	}
	log := newLogger(c, env.stderr)
	if c.MySQLDSN != "" {
		if err := sqlstore.MigrateMySQL(ctx, c.MySQLDSN, log); err != nil {
			return fmt.Errorf("MariaDB/MySQL (%s): %w", maskDSN(c.MySQLDSN), err)
		}
		fmt.Fprintln(env.stdout, "MariaDB/MySQL schema is up to date")
	}
	if c.usesSQLite() {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return err
		}
		db, err := sqlstore.OpenSQLite(ctx, c.sqlitePath(), log) // migrates itself
		if err != nil {
			return err
		}
		_ = db.Close()
		fmt.Fprintln(env.stdout, "embedded database", c.sqlitePath(), "is up to date")
	}
	if createTable {
		if err := createDynamoTable(ctx, c, log); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, "DynamoDB table", c.dynamoTable(), "is ready")
	}
	if createBucket {
		if err := createS3Bucket(ctx, c, log); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, "S3 bucket", c.S3Bucket, "is ready")
	}
	return nil
}

// dynamoTable is the configured DynamoDB table name, "message" as in the original design.
func (c Config) dynamoTable() string {
	if c.DynamoTable == "" {
		return "message"
	}
	return c.DynamoTable
}

// runExport runs the export job of one ended chat now, in this process.
func runExport(ctx context.Context, env *environment, args []string) error {
	c, rest, err := loadConfig("export", args, env.getenv, env.stderr)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("usage: parley export SESSION")
	}
	p, err := openParts(ctx, c, newLogger(c, env.stderr))
	if err != nil {
		return err
	}
	defer p.Close()
	s, err := p.sessions.Session(ctx, rest[0])
	if err != nil {
		return fmt.Errorf("session %s: %s", rest[0], chat.ErrorMessage(err))
	}
	if s.Status == chat.StatusInProgress {
		return fmt.Errorf("session %s is still in progress: end the chat first", s.ID)
	}
	if err := p.exporter.Export(ctx, s.ID); err != nil {
		return err
	}
	s, err = p.sessions.Session(ctx, s.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "session %s: %s, %d messages, archived as %s (sha256 %s)\n",
		s.ID, s.Status, s.MessageCount, s.Archive.Key, s.Archive.SHA256)
	return nil
}

// runPurge purges (or with --dry-run lists) the messages of archived chats now.
func runPurge(ctx context.Context, env *environment, args []string) error {
	var dryRun bool
	c, _, err := loadConfig("purge", args, env.getenv, env.stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&dryRun, "dry-run", false, "list what is due and whether its archive is confirmed; change nothing")
	})
	if err != nil {
		return err
	}
	p, err := openParts(ctx, c, newLogger(c, env.stderr))
	if err != nil {
		return err
	}
	defer p.Close()
	if dryRun {
		return listDue(ctx, env, p.exporter)
	}
	return purgeWithProgress(ctx, env, p.exporter)
}

func listDue(ctx context.Context, env *environment, e *transcript.Exporter) error {
	due, err := e.DuePurges(ctx)
	for _, d := range due {
		state := "would purge"
		if !d.Confirmed {
			state = "kept: " + d.Reason
		}
		fmt.Fprintf(env.stdout, "%s\troom %s\t%s\n", d.Session.ID, d.Session.Room, state)
	}
	fmt.Fprintf(env.stdout, "%d session(s) due\n", len(due))
	return err
}

// purgeWithProgress purges everything due, with a progress bar when there is much.
func purgeWithProgress(ctx context.Context, env *environment, e *transcript.Exporter) error {
	due, err := e.DuePurges(ctx)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if len(due) > 20 {
		bar = progressbar.NewOptions(len(due), progressbar.OptionSetWriter(env.stderr),
			progressbar.OptionSetDescription("purging"), progressbar.OptionShowCount())
	}
	report, err := e.PurgeAll(ctx, chat.Now(), func(transcript.Due, error) {
		if bar != nil {
			_ = bar.Add(1)
		}
	})
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(env.stderr)
	}
	fmt.Fprintf(env.stdout, "purged %d, kept %d (archive not confirmed), failed %d\n",
		report.Purged, report.Unconfirmed, report.Failed)
	return err
}
