package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"parley/internal/asynqqueue"
	"parley/internal/chat"
	"parley/internal/dynamostore"
	"parley/internal/redisbus"
	"parley/internal/s3blob"
	"parley/internal/smtpmail"
)

func (c Config) dynamoOptions(log *slog.Logger) dynamostore.Options {
	return dynamostore.Options{Table: c.dynamoTable(), Region: c.AWSRegion, Endpoint: c.DynamoEndpoint, Logger: log}
}

func (p *parts) openDynamo(ctx context.Context) (chat.MessageStore, error) {
	s, err := dynamostore.Open(ctx, p.cfg.dynamoOptions(p.log))
	if err != nil {
		return nil, fmt.Errorf("DynamoDB table %s: %w", p.cfg.dynamoTable(), err)
	}
	p.onClose(s.Close)
	if err := s.Ping(ctx); err != nil {
		return nil, fmt.Errorf("DynamoDB table %s is not reachable (create it with `parley migrate --create-table`): %w", p.cfg.dynamoTable(), err)
	}
	p.log.Info("backend", "part", "messages", "uses", "dynamodb", "table", p.cfg.dynamoTable(), "region", p.cfg.AWSRegion, "endpoint", p.cfg.DynamoEndpoint)
	return s, nil
}

func (p *parts) openRedisFanOut(ctx context.Context) error {
	t := p.cfg.redisTarget()
	bus, err := redisbus.New(ctx, redisbus.Options{URL: t.URL, Cluster: t.Cluster, Prefix: p.cfg.RedisPrefix + ":", Logger: p.log,
		PresenceTTL: p.cfg.PresenceTTL})
	if err != nil {
		return fmt.Errorf("Redis (%s): %w", p.cfg.redisName(), err)
	}
	p.onClose(bus.Close)
	p.broker, p.presence = bus, bus
	p.log.Info("backend", "part", "fan-out", "uses", "redis", "cluster", t.Cluster, "url", maskURL(t.URL), "replica", bus.ReplicaID())
	return nil
}

func (c Config) s3Options(log *slog.Logger) s3blob.Options {
	return s3blob.Options{
		Bucket: c.S3Bucket, Prefix: c.S3Prefix, Region: c.AWSRegion,
		Endpoint: c.S3Endpoint, PublicEndpoint: c.S3PublicEndpoint, PathStyle: c.S3PathStyle, Logger: log,
		PutTimeout: c.S3PutTimeout, CallTimeout: c.S3CallTimeout,
	}
}

func (p *parts) openS3(ctx context.Context) error {
	a, err := s3blob.Open(ctx, p.cfg.s3Options(p.log))
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", p.cfg.S3Bucket, err)
	}
	p.onClose(a.Close)
	if err := a.Ping(ctx); err != nil {
		return fmt.Errorf("S3 bucket %s is not reachable (create it with `parley migrate --create-bucket`): %w", p.cfg.S3Bucket, err)
	}
	p.archive = a
	p.log.Info("backend", "part", "archive", "uses", "s3", "bucket", p.cfg.S3Bucket, "prefix", p.cfg.S3Prefix, "endpoint", p.cfg.S3Endpoint)
	return nil
}

func (p *parts) openSMTP(_ context.Context) error {
	o, err := smtpmail.ParseURL(p.cfg.SMTPURL)
	if err != nil {
		return fmt.Errorf("PARLEY_SMTP_URL %s: %w", maskURL(p.cfg.SMTPURL), err)
	}
	o.From, o.ReplyTo, o.Logger = p.cfg.MailFrom, p.cfg.MailReplyTo, p.log
	m, err := smtpmail.New(o)
	if err != nil {
		return fmt.Errorf("SMTP: %w", err)
	}
	p.mailer = m
	p.log.Info("backend", "part", "mail", "uses", "smtp", "server", o)
	return nil
}

func (p *parts) openAsynqClient(_ context.Context) (chat.Queue, error) {
	q, err := asynqqueue.NewClient(p.cfg.redisTarget(), asynqqueue.Options{Queue: p.cfg.RedisPrefix})
	if err != nil {
		return nil, fmt.Errorf("Redis job queue (%s): %w", p.cfg.redisName(), err)
	}
	p.onClose(q.Close)
	p.log.Info("backend", "part", "jobs", "uses", "asynq (run by parley worker)")
	return q, nil
}

func createDynamoTable(ctx context.Context, c Config, log *slog.Logger) error {
	s, err := dynamostore.Open(ctx, c.dynamoOptions(log))
	if err != nil {
		return err
	}
	defer s.Close()
	return s.CreateTable(ctx)
}

func createS3Bucket(ctx context.Context, c Config, log *slog.Logger) error {
	if c.S3Bucket == "" {
		return errors.New("--create-bucket needs PARLEY_S3_BUCKET")
	}
	a, err := s3blob.Open(ctx, c.s3Options(log))
	if err != nil {
		return err
	}
	defer a.Close()
	return a.CreateBucket(ctx)
}

// runWorker runs export jobs and the nightly purge from Redis (asynq), the Celery
// worker + beat of the original design, and re-enqueues unfinished exports.
func runWorker(ctx context.Context, env *environment, args []string) error {
	c, _, err := loadConfig("worker", args, env.getenv, env.stderr)
	if err != nil {
		return err
	}
	if !c.usesRedis() {
		return errors.New("parley worker needs PARLEY_REDIS_URL or PARLEY_REDIS_CLUSTER_URL; without Redis, parley serve runs the jobs itself")
	}
	log := newLogger(c, env.stderr)
	log.Info("parley worker starting", "version", Version, "purge_schedule", c.PurgeSchedule, "tz", c.TZ)
	p, err := openParts(ctx, c, log)
	if err != nil {
		return err
	}
	defer p.Close()
	q, err := p.openAsynqClient(ctx)
	if err != nil {
		return err
	}
	if err := p.startSweeper(ctx, q); err != nil {
		return err
	}
	w, err := asynqqueue.NewWorker(c.redisTarget(), p.exporter, asynqqueue.WorkerOptions{
		Queue: c.RedisPrefix, PurgeSchedule: c.PurgeSchedule, Location: c.location(), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("asynq worker: %w", err)
	}
	defer w.Close()
	err = w.Run(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
