// Package clustered keeps the fired slots of cron triggers (package cron) in a cluster's
// JetStream key-value bucket, so that each slot runs on exactly one node.
package clustered

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cron"
)

// ClaimsBucket is the JetStream key-value bucket of the cluster's fired slots. A slot is
// claimed by creating the key "<trigger>.<slot's Unix time>" (create-if-absent, checked by
// the stream's leader: exactly one node's create succeeds); "<trigger>.last" records the
// latest claimed slot for catching up after a restart. Keys expire after ClaimsTTL.
const ClaimsBucket = "verge_cron"

// ClaimsTTL is how long a claim stays in the bucket: longer than any catch-up looks back
// (a catch-up fires only a slot later than the trigger's recorded last one).
const ClaimsTTL = 35 * 24 * time.Hour

const (
	// maxClaimAttempts bounds the rounds of one claim whose answers were lost.
	maxClaimAttempts = 8
	// retryPause separates the rounds of a bucket open or claim that got no answer.
	retryPause = 200 * time.Millisecond
)

// Claims records fired slots (cron.Claims) in the cluster's ClaimsBucket.
type Claims struct {
	node *cluster.Node

	mu sync.Mutex
	kv jetstream.KeyValue
}

// New returns claims kept in the cluster of node; the bucket is created on first use.
func New(node *cluster.Node) *Claims { return &Claims{node: node} }

var _ cron.Claims = (*Claims)(nil)

// pause waits retryPause or until ctx ends.
func pause(ctx context.Context) error {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// bucket opens (or creates) the bucket, retrying until ctx ends: JetStream may not answer
// yet while the cluster forms.
func (c *Claims) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return c.kv, nil
	}
	js := c.node.JetStream()
	for {
		kv, err := js.KeyValue(ctx, ClaimsBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:       ClaimsBucket,
				Description:  "Verge cron triggers: the claimed slots of each trigger",
				History:      1,
				TTL:          ClaimsTTL,
				MaxValueSize: 1024,
				Replicas:     max(c.node.Replicas(), 1),
				Storage:      jetstream.FileStorage,
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, ClaimsBucket)
			}
		}
		if err == nil {
			c.kv = kv
			return kv, nil
		}
		if pause(ctx) != nil {
			return nil, fmt.Errorf("cron claims bucket: %w", err)
		}
	}
}

// Claim creates the slot's key. When a create's answer is lost, the next round reads the
// key: the node's name in the value tells whether the create that succeeded was its own.
func (c *Claims) Claim(ctx context.Context, key string, slot time.Time) (bool, error) {
	kv, err := c.bucket(ctx)
	if err != nil {
		return false, err
	}
	me := c.node.Name()
	unix := strconv.FormatInt(slot.Unix(), 10)
	value := []byte(unix + " " + me)
	slotKey := key + "." + unix
	tried := false
	var lastErr error
	for range maxClaimAttempts {
		if tried {
			e, err := kv.Get(ctx, slotKey)
			if err == nil {
				_, node, _ := strings.Cut(string(e.Value()), " ")
				if node != me {
					return false, nil
				}
				c.recordLast(ctx, kv, key, value)
				return true, nil
			}
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				lastErr = err
				if pause(ctx) != nil {
					break
				}
				continue
			}
		}
		_, err := kv.Create(ctx, slotKey, value)
		if err == nil {
			c.recordLast(ctx, kv, key, value)
			return true, nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) && !tried {
			return false, nil // another node's, or an earlier claim of this one
		}
		tried, lastErr = true, err
		if pause(ctx) != nil {
			break
		}
	}
	return false, fmt.Errorf("cron claim %s: %w", slotKey, lastErr)
}

// recordLast records slot as the trigger's latest claimed one unless a later one is,
// best effort: the slot's own key decided the claim.
func (c *Claims) recordLast(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) {
	lastKey := key + ".last"
	want, _, _ := parseClaim(value)
	for range maxClaimAttempts {
		e, err := kv.Get(ctx, lastKey)
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return
		default:
			if v, _, err := parseClaim(e.Value()); err == nil && v >= want {
				return
			}
			rev = e.Revision()
		}
		if _, err = kv.Update(ctx, lastKey, value, rev); err == nil || ctx.Err() != nil {
			return
		}
	}
}

// parseClaim decodes "unix node".
func parseClaim(b []byte) (int64, string, error) {
	slot, node, _ := strings.Cut(string(b), " ")
	v, err := strconv.ParseInt(slot, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("cron claim %q: %w", b, err)
	}
	return v, node, nil
}

// Last returns key's latest recorded slot.
func (c *Claims) Last(ctx context.Context, key string) (time.Time, error) {
	kv, err := c.bucket(ctx)
	if err != nil {
		return time.Time{}, err
	}
	e, err := kv.Get(ctx, key+".last")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	v, _, err := parseClaim(e.Value())
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(v, 0).UTC(), nil
}
