package cli

import (
	"context"
	"errors"
	"log/slog"

	"parley/internal/chat"
)

// The production backends are wired here as their packages land.

func (p *parts) openDynamo(ctx context.Context) (chat.MessageStore, error) {
	return nil, errors.New("DynamoDB messages are not available in this build yet")
}

func (p *parts) openRedisFanOut(ctx context.Context) error {
	return errors.New("Redis fan-out is not available in this build yet")
}

func (p *parts) openS3(ctx context.Context) error {
	return errors.New("the S3 archive is not available in this build yet")
}

func (p *parts) openSMTP(ctx context.Context) error {
	return errors.New("SMTP mail is not available in this build yet")
}

func (p *parts) openAsynqClient(ctx context.Context) (chat.Queue, error) {
	return nil, errors.New("the Redis job queue is not available in this build yet")
}

func createDynamoTable(ctx context.Context, c Config, log *slog.Logger) error {
	return errors.New("DynamoDB is not available in this build yet")
}

func createS3Bucket(ctx context.Context, c Config, log *slog.Logger) error {
	return errors.New("S3 is not available in this build yet")
}

func runWorker(ctx context.Context, env *environment, args []string) error {
	return errors.New("parley worker needs the Redis job queue, not available in this build yet")
}
