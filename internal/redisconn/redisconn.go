// Package redisconn opens Parley's Redis clients, on one Redis server (PARLEY_REDIS_URL)
// or on a Redis Cluster (PARLEY_REDIS_CLUSTER_URL), behind go-redis's UniversalClient,
// so the fan-out bus and the job queue share one code path for both.
package redisconn

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"parley/internal/chat"
)

// Target says where Redis is.
type Target struct {
	// URL is redis://[user:pass@]host:port/db for one server, or, when Cluster is set,
	// go-redis's cluster form redis://[user:pass@]host1:p1?addr=host2:p2&addr=host3:p3.
	URL     string
	Cluster bool
}

// Client is an open Redis: commands go through Cmd (key-routed in a cluster); Node
// returns the options of a dedicated connection to one node, for subscribers.
type Client struct {
	Cmd     redis.UniversalClient
	Cluster *redis.ClusterClient // nil on one server
	node    redis.Options
}

// Open connects to t, names the connections name (visible in CLIENT LIST), and checks
// that every master answers.
func Open(ctx context.Context, t Target, name string) (*Client, error) {
	c := &Client{}
	if t.Cluster {
		copts, err := redis.ParseClusterURL(t.URL)
		if err != nil {
			return nil, chat.Wrap(chat.EInvalid, err, "redis cluster URL is not valid")
		}
		copts.ClientName = name
		// A command's context deadline (a publish's 1.5 s) bounds its network wait,
		// not only go-redis's 3 s read timeout: a hung Redis is given up on in time.
		copts.ContextTimeoutEnabled = true
		c.Cluster = redis.NewClusterClient(copts)
		c.Cmd = c.Cluster
		c.node = redis.Options{
			Protocol: copts.Protocol, Username: copts.Username, Password: copts.Password,
			TLSConfig: copts.TLSConfig, DialTimeout: copts.DialTimeout,
			ReadTimeout: copts.ReadTimeout, WriteTimeout: copts.WriteTimeout,
		}
	} else {
		ropts, err := redis.ParseURL(t.URL)
		if err != nil {
			return nil, chat.Wrap(chat.EInvalid, err, "redis URL is not valid")
		}
		c.node = *ropts
		ropts.ClientName = name
		ropts.ContextTimeoutEnabled = true // as for the cluster above
		c.Cmd = redis.NewClient(ropts)
	}
	if err := c.Ping(ctx); err != nil {
		_ = c.Cmd.Close()
		return nil, err
	}
	return c, nil
}

// NodeOptions returns options for a connection of its own to the node at addr (the
// server's own address on one server).
func (c *Client) NodeOptions(addr string) *redis.Options {
	o := c.node
	if addr != "" {
		o.Addr = addr
	}
	return &o
}

// Ping checks the server, or every master of the cluster, and names the node that
// does not answer.
func (c *Client) Ping(ctx context.Context) error {
	if c.Cluster == nil {
		if err := c.Cmd.Ping(ctx).Err(); err != nil {
			return chat.Wrap(chat.EUnavailable, err, "redis cannot be reached")
		}
		return nil
	}
	err := c.Cluster.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		if err := n.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis cluster node %s: %w", n.Options().Addr, err)
		}
		return nil
	})
	if err != nil {
		return chat.Wrap(chat.EUnavailable, err, "redis cluster cannot be reached")
	}
	return nil
}

// Owner returns the address of the node serving key: the cluster master of its slot
// as go-redis last saw it, or "" on one server.
func (c *Client) Owner(ctx context.Context, key string) (string, error) {
	if c.Cluster == nil {
		return "", nil
	}
	n, err := c.Cluster.MasterForKey(ctx, key)
	if err != nil {
		return "", chat.Wrap(chat.EUnavailable, err, "redis cluster slot owner unknown")
	}
	return n.Options().Addr, nil
}

// Owners asks the cluster afresh which master serves each slot (after a failover,
// go-redis's cached map may still name the old master) and returns a lookup by key.
// On one server every key maps to "".
func (c *Client) Owners(ctx context.Context) (func(key string) string, error) {
	if c.Cluster == nil {
		return func(string) string { return "" }, nil
	}
	slots, err := c.Cluster.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, chat.Wrap(chat.EUnavailable, err, "redis CLUSTER SLOTS failed")
	}
	var owner [SlotCount]string
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			continue
		}
		for i := max(s.Start, 0); i <= s.End && i < SlotCount; i++ {
			owner[i] = s.Nodes[0].Addr
		}
	}
	c.Cluster.ReloadState(ctx) // let go-redis's own map catch up too
	return func(key string) string { return owner[Slot(key)] }, nil
}

// Close closes the client.
func (c *Client) Close() error { return c.Cmd.Close() }

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// Slot returns the cluster hash slot of key: CRC16 (XMODEM) of its hash tag (the text
// between the first "{" and the next "}", when not empty) or of the whole key.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % SlotCount
}
