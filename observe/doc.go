// Package observe is Verge's observability adapter: Prometheus metrics, the per-request access
// log and the error log.
//
// It is the only package that imports the Prometheus client library. The rest of Verge reports
// through plain method calls and small hook types (server.Server.ConnHook, the logging phase),
// and the verge binary wires those to a *Metrics and an *AccessLog built here.
//
// The request path calls Metrics.ObserveRequest, Metrics.ObserveUpstream and AccessLog.Log once
// per request. They allocate nothing in steady state: metric children are resolved once per
// label combination and cached, and log lines are built with strconv appends into pooled
// buffers that are written out in batches.
package observe
