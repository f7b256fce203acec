package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/message"
)

// HTTPCache is the shared HTTP cache behind the Cache API. *cache.Cache implements it; ns
// is the namespace the entries live in, which the host derives from the worker's and the
// cache's names so that one worker never names another's.
type HTTPCache interface {
	Match(ctx context.Context, ns string, req *message.Request) (*message.Response, bool)
	Put(ns string, req *message.Request, resp *message.Response, body []byte) error
	Delete(ns string, req *message.Request) bool
}

// Limits of the Cache API.
const (
	// MaxCacheName bounds the name of a cache (sdk.OpenCache).
	MaxCacheName = 128
	// MaxCachePut bounds the body of one Cache API put; the cache's own object limit
	// (64 MiB by default) applies too.
	MaxCachePut = 32 << 20
)

// Cache API outcomes, counted per worker (Stats.CacheOps).
const (
	cacheMatchHit = iota
	cacheMatchMiss
	cachePutStored
	cachePutNotStored
	cachePutRefused
	cacheDeleteDeleted
	cacheDeleteAbsent
	numCacheOps
)

var cacheOpLabels = [numCacheOps]string{"match_hit", "match_miss", "put_stored", "put_not_stored", "put_refused", "delete_deleted", "delete_absent"}

// cacheNamespace is the namespace of a worker's named cache: the lengths make it
// unambiguous whatever the names hold.
func cacheNamespace(worker, cache string) string {
	return fmt.Sprintf("w%d:%s:%d:%s", len(worker), worker, len(cache), cache)
}

// cacheOp serves the Cache API operations (workerabi.OpCacheMatch, OpCachePut,
// OpCacheDelete).
func (inv *invocation) cacheOp(op uint32, arg []byte) (uint32, []byte) {
	v := inv.inst.v
	c := v.w.reg.svc.Cache
	if c == nil {
		return fail(workerabi.StatusUnavailable, errors.New("the Cache API is not available on this host (no cache configured)"))
	}
	d := workerabi.Decoder{B: arg}
	name := d.Str()
	method, rawURL := d.Str(), d.Str()
	d.Raw()
	req := &message.Request{Method: method, Proto: message.HTTP11}
	for n := d.Count(8); n > 0; n-- {
		req.Header.Add(d.Str(), d.Str())
	}
	d.Raw() // the request body: not part of the key
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if name == "" || len(name) > MaxCacheName {
		return fail(workerabi.StatusInvalid, fmt.Errorf("cache name must be 1 to %d bytes", MaxCacheName))
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail(workerabi.StatusInvalid, fmt.Errorf("cache: invalid URL %q (want http or https with a host)", rawURL))
	}
	req.Scheme, req.Authority, req.Target = u.Scheme, u.Host, u.RequestURI()
	ns := cacheNamespace(v.w.name, name)
	st := &v.w.stats
	e := &inv.e
	e.B = e.B[:0]
	switch op {
	case workerabi.OpCacheMatch:
		if inv.streams.full() {
			return fail(workerabi.StatusLimit, fmt.Errorf("too many open response bodies (limit %d): read them to the end or close them", MaxOpenBodies))
		}
		resp, ok := c.Match(inv.io(), ns, req)
		if !ok {
			st.cacheOps[cacheMatchMiss].Add(1)
			e.U8(0)
			return workerabi.StatusOK, e.B
		}
		st.cacheOps[cacheMatchHit].Add(1)
		e.U8(1)
		if resp.Body == nil || resp.ContentLength >= 0 && resp.ContentLength <= InlineBody {
			var data []byte
			if resp.Body != nil {
				data, err = io.ReadAll(io.LimitReader(resp.Body, InlineBody+1))
				resp.Body.Close()
				if err != nil {
					return fail(workerabi.StatusInternal, fmt.Errorf("cache: reading body: %w", err))
				}
			}
			e.U32(0)
			encodeRespHead(e, resp)
			e.Bytes(data)
			return workerabi.StatusOK, e.B
		}
		e.U32(inv.streams.add(resp.Body))
		encodeRespHead(e, resp)
		e.Bytes(nil)
		return workerabi.StatusOK, e.B
	case workerabi.OpCachePut:
		resp := &message.Response{Status: int(d.U32()), Proto: message.HTTP11}
		for n := d.Count(8); n > 0; n-- {
			resp.Header.Add(d.Str(), d.Str())
		}
		body := d.Raw()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if len(body) > MaxCachePut {
			return fail(workerabi.StatusLimit, fmt.Errorf("cache: put body of %d bytes exceeds %d", len(body), MaxCachePut))
		}
		if resp.Status < 200 || resp.Status > 599 {
			return fail(workerabi.StatusInvalid, fmt.Errorf("cache: put of status %d", resp.Status))
		}
		err := c.Put(ns, req, resp, body)
		switch {
		case err == nil:
			st.cacheOps[cachePutStored].Add(1)
			e.U8(1)
			e.Str("")
		case isNotStored(err):
			st.cacheOps[cachePutNotStored].Add(1)
			e.U8(0)
			e.Str(notStoredReason(err))
		default:
			st.cacheOps[cachePutRefused].Add(1)
			return fail(workerabi.StatusInvalid, err)
		}
		return workerabi.StatusOK, e.B
	case workerabi.OpCacheDelete:
		if c.Delete(ns, req) {
			st.cacheOps[cacheDeleteDeleted].Add(1)
			e.U8(1)
		} else {
			st.cacheOps[cacheDeleteAbsent].Add(1)
			e.U8(0)
		}
		return workerabi.StatusOK, e.B
	}
	return fail(workerabi.StatusUnavailable, fmt.Errorf("unknown host operation %d", op))
}

// notStored is what a cache's "not stored" error offers: the reason.
type notStored interface{ NotStoredReason() string }

func isNotStored(err error) bool {
	var n notStored
	return errors.As(err, &n)
}

func notStoredReason(err error) string {
	var n notStored
	errors.As(err, &n)
	return n.NotStoredReason()
}
