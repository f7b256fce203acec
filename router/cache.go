package router

import (
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// compileCache turns a route's cache settings into a cache policy; nil when caching is off.
func compileCache(rc *config.RouteCache) *cache.Policy {
	if !rc.On() {
		return nil
	}
	p := &cache.Policy{
		TTL:           rc.StatusTTLs(),
		Statuses:      rc.Statuses,
		MaxObjectSize: int64(rc.MaxObjectSize),
		IgnoreQuery:   rc.Key.IgnoreQuery,
		IncludeQuery:  rc.Key.IncludeQuery,
		ExcludeQuery:  rc.Key.ExcludeQuery,
		KeyHeaders:    rc.Key.Headers,
		BypassCookies: rc.Bypass.Cookies,
		BypassHeaders: rc.Bypass.Headers,
		LockTimeout:   rc.LockTimeout.Std(),
		UseStale:      rc.UseStale,
		TargetedField: rc.TargetedField,
	}
	if rc.LockDisabled {
		p.LockTimeout = -1
	}
	return p
}

// CacheRequest gives the cache the matched route's policy; routes without caching bypass it.
func (p *phases) CacheRequest(_ *proxy.Session, ctl *proxy.CacheControl, c *reqCtx) error {
	if c.route == nil || c.route.cache == nil {
		ctl.Bypass = true
		return nil
	}
	ctl.Policy = c.route.cache
	if e := c.route.ext; e != nil && e.cache != nil {
		ctl.Policy = e.cache // authenticated route: the Authorization rule for every request
	}
	return nil
}

// CacheResponse keeps the cache's decision.
func (p *phases) CacheResponse(*proxy.Session, *message.Response, *proxy.CacheDecision, *reqCtx) error {
	return nil
}

var _ proxy.CachePhases[reqCtx] = (*phases)(nil)
