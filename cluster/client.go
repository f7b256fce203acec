package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Client is a plain NATS client of the cluster, not a node: it runs no server, answers no
// member pings and does not reconnect forever. Tools (verge kv) use it.
type Client struct {
	Conn      *nats.Conn
	JetStream jetstream.JetStream
}

// Dial connects to o.URLs as a client, authenticating with o's Token, User/Password or
// Credentials and TLS; o.Embedded and o.Node are ignored. An unreachable cluster is an
// error wrapping ErrUnavailable.
func Dial(ctx context.Context, o Options) (*Client, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("cluster: no NATS URL to connect to")
	}
	opts := append([]nats.Option{nats.Name("verge client"), nats.Timeout(5 * time.Second), nats.MaxReconnects(5)}, o.authOptions()...)
	url := strings.Join(o.URLs, ",")
	type result struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		ch <- result{nc, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("cluster: connect to %s: %w (%w)", url, ErrUnavailable, ctx.Err())
	}
	if r.err != nil {
		if errors.Is(r.err, nats.ErrAuthorization) || strings.Contains(r.err.Error(), "Authorization") {
			return nil, fmt.Errorf("cluster: connect to %s: %w", url, r.err)
		}
		return nil, fmt.Errorf("cluster: connect to %s: %w: %w", url, ErrUnavailable, r.err)
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		r.nc.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return &Client{Conn: r.nc, JetStream: js}, nil
}

// Close closes the connection.
func (c *Client) Close() { c.Conn.Close() }
