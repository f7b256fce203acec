package upstream

import (
	"net"
	"time"
)

// Transport defaults, applied by (*Transport).init for zero fields.
const (
	// DefaultReadTimeout bounds each wait for bytes from a peer.
	DefaultReadTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds each write to a peer.
	DefaultWriteTimeout = 60 * time.Second
	// DefaultIdleTimeout is how long an unused pooled connection is kept (as NGINX's upstream
	// keepalive_timeout).
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxIdlePerPeer caps idle HTTP/1 connections per pool key.
	DefaultMaxIdlePerPeer = 128
	// DefaultMaxIdleTotal caps idle HTTP/1 connections across all keys.
	DefaultMaxIdleTotal = 4096
)

// resolvedTimeouts are a peer's timeouts with defaults applied; zero means no limit.
type resolvedTimeouts struct {
	connect, read, write, idle, total time.Duration
}

// config is a Transport's settings with every default applied, computed once.
type config struct {
	defaults        resolvedTimeouts
	maxIdlePerPeer  int // 0: no idle HTTP/1 pooling
	maxIdleTotal    int // 0: no global cap
	maxConnsPerPeer int // 0: unlimited
	maxConnWait     time.Duration
	maxHeaderBytes  int
	retry           bool
	dialer          *net.Dialer
	codecs          codecFactory
}

// pick returns v, or def when v is zero; a negative v means no limit (zero).
func pick(v, def time.Duration) time.Duration {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return def
	}
	return v
}

// newConfig applies the defaults of every Transport field in one place.
func newConfig(t *Transport) config {
	c := config{
		defaults: resolvedTimeouts{
			connect: pick(t.Timeouts.Connect, DefaultConnectTimeout),
			read:    pick(t.Timeouts.Read, DefaultReadTimeout),
			write:   pick(t.Timeouts.Write, DefaultWriteTimeout),
			idle:    pick(t.Timeouts.Idle, DefaultIdleTimeout),
			total:   pick(t.Timeouts.Total, 0),
		},
		maxConnsPerPeer: max(t.MaxConnsPerPeer, 0),
		maxConnWait:     pick(t.MaxConnWait, 0),
		maxHeaderBytes:  max(t.MaxResponseHeaderBytes, 0),
		retry:           !t.DisableRetry,
		dialer:          newDialer(pick(t.KeepAlive, DefaultKeepAlive)),
		codecs:          defaultCodecs,
	}
	if t.KeepAlive < 0 {
		c.dialer = newDialer(-1)
	}
	switch {
	case t.MaxIdlePerPeer < 0:
		c.maxIdlePerPeer = 0
	case t.MaxIdlePerPeer == 0:
		c.maxIdlePerPeer = DefaultMaxIdlePerPeer
	default:
		c.maxIdlePerPeer = t.MaxIdlePerPeer
	}
	switch {
	case t.MaxIdleTotal < 0:
		c.maxIdleTotal = 0
	case t.MaxIdleTotal == 0:
		c.maxIdleTotal = DefaultMaxIdleTotal
	default:
		c.maxIdleTotal = t.MaxIdleTotal
	}
	if t.codecs != nil {
		c.codecs = *t.codecs
	}
	return c
}

// resolve applies the transport's defaults to a peer's timeouts. Zero fields of tp take the
// transport's value, negative ones mean no limit.
func (c *config) resolve(tp *Timeouts) resolvedTimeouts {
	return resolvedTimeouts{
		connect: pickOr(tp.Connect, c.defaults.connect),
		read:    pickOr(tp.Read, c.defaults.read),
		write:   pickOr(tp.Write, c.defaults.write),
		idle:    pickOr(tp.Idle, c.defaults.idle),
		total:   pickOr(tp.Total, c.defaults.total),
	}
}

// pickOr is pick for an already resolved default (where zero means no limit).
func pickOr(v, resolved time.Duration) time.Duration {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return resolved
	}
	return v
}
