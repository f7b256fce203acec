package worker

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// workerStats are a worker's counters since it was first deployed, kept across versions.
// Invocations update them with atomic adds only (no lock, no allocation); Registry.Stats
// reads them.
type workerStats struct {
	invocations [workerabi.KindQueue + 1]atomic.Uint64 // by invocation kind
	errors      [MemoryLimit + 1]atomic.Uint64         // by ErrorKind
	cpu         atomic.Int64                           // guest CPU time, nanoseconds
	evictions   atomic.Uint64                          // Durable Objects evicted
	// objectInstances counts the open instances hosting Durable Objects (objects.go).
	objectInstances atomic.Int64
	// cacheOps counts Cache API operations by outcome (cacheapi.go, cacheOpLabels).
	cacheOps [numCacheOps]atomic.Uint64
}

// ran counts one invocation of kind and the guest CPU time it used.
func (s *workerStats) ran(kind uint32, cpu time.Duration) {
	if kind < uint32(len(s.invocations)) {
		s.invocations[kind].Add(1)
	}
	s.cpu.Add(int64(cpu))
}

// fail counts one failed invocation.
func (s *workerStats) fail(k ErrorKind) {
	if int(k) < len(s.errors) {
		s.errors[k].Add(1)
	}
}

// Label returns the kind as a metric label value: crashed, cpu_limit, wall_limit,
// no_response, overloaded, unavailable, memory_limit.
func (k ErrorKind) Label() string {
	switch k {
	case Crashed:
		return "crashed"
	case CPULimit:
		return "cpu_limit"
	case WallLimit:
		return "wall_limit"
	case NoResponse:
		return "no_response"
	case Overloaded:
		return "overloaded"
	case Unavailable:
		return "unavailable"
	case MemoryLimit:
		return "memory_limit"
	}
	return "unknown"
}

// invocationLabels names the invocation kinds in Stats.Invocations.
var invocationLabels = [...]string{
	workerabi.KindFetch:     "fetch",
	workerabi.KindDOFetch:   "object",
	workerabi.KindDOAlarm:   "alarm",
	workerabi.KindWSMessage: "websocket_message",
	workerabi.KindWSClose:   "websocket_close",
	workerabi.KindWSError:   "websocket_error",
	workerabi.KindDOEvict:   "evict",
	workerabi.KindScheduled: "scheduled",
	workerabi.KindQueue:     "queue",
}

// Stats is a point-in-time view of one worker, for metrics. Counters count since the worker
// was first deployed in this registry (a removed and redeployed worker starts from zero).
type Stats struct {
	// Worker is the worker's name.
	Worker string
	// Invocations counts the guest invocations run, by kind: "fetch" (requests), "object"
	// (Durable Object requests), "alarm" (Durable Object alarms), "websocket_message",
	// "websocket_close" and "websocket_error" (events of sockets a Durable Object holds) and
	// "evict" (an object dropped from a shared instance), "scheduled" (cron triggers) and
	// "queue" (a batch of queue messages). Every kind is present.
	Invocations map[string]uint64
	// Errors counts failed invocations by ErrorKind.Label. Every kind is present. A request
	// that fails before an instance runs it (Unavailable, Overloaded, an instance that does
	// not initialize) counts here but not in Invocations.
	Errors map[string]uint64
	// CPU is the guest CPU time of all invocations (what Limits.CPUTime bounds).
	CPU time.Duration
	// IdleInstances and BusyInstances count the current version's pooled instances waiting
	// for a request and running one.
	IdleInstances, BusyInstances int
	// LiveObjects counts the worker's Durable Objects that are live.
	LiveObjects int
	// ObjectInstances counts the instances hosting the live objects (of every version):
	// objects share instances, up to Limits.ObjectsPerInstance each.
	ObjectInstances int
	// Evictions counts Durable Objects evicted (idle, over a namespace's live cap, or on
	// shutdown); an instance is closed with its last object.
	Evictions uint64
	// Memory is the linear memory the worker's instances hold, in bytes (what
	// Services.MemoryLimit caps).
	Memory int64
	// WebSockets counts the worker's open WebSockets: those its requests hold and those
	// held for its Durable Objects. WebSocketMessagesIn and WebSocketMessagesOut count the
	// messages received from and sent to clients.
	WebSockets                                int
	WebSocketMessagesIn, WebSocketMessagesOut uint64
	// CacheOps counts Cache API operations by "op_result": match_hit, match_miss,
	// put_stored, put_not_stored, put_refused, delete_deleted, delete_absent.
	CacheOps map[string]uint64
}

// Stats returns a view of every deployed worker, sorted by name. It is meant for a metrics
// scrape: it takes the locks the request path takes only to start and end instances.
func (r *Registry) Stats() []Stats {
	r.mu.Lock()
	names := slices.Sorted(maps.Keys(r.workers))
	ws := make([]*Worker, len(names))
	for i, n := range names {
		ws[i] = r.workers[n]
	}
	r.mu.Unlock()
	out := make([]Stats, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.Stats())
	}
	return out
}

// Stats returns a view of the worker (see Registry.Stats); a removed worker's view keeps its
// counters.
func (w *Worker) Stats() Stats {
	s := &w.stats
	st := Stats{
		Worker:      w.name,
		Invocations: make(map[string]uint64, len(s.invocations)),
		Errors:      make(map[string]uint64, len(s.errors)-1),
		CPU:         time.Duration(s.cpu.Load()),
		Evictions:   s.evictions.Load(),

		ObjectInstances: int(s.objectInstances.Load()),
	}
	for k, label := range invocationLabels {
		if label != "" { // unused kinds have no label
			st.Invocations[label] = s.invocations[k].Load()
		}
	}
	for k := Crashed; k <= MemoryLimit; k++ {
		st.Errors[k.Label()] = s.errors[k].Load()
	}
	st.CacheOps = make(map[string]uint64, numCacheOps)
	for k, label := range cacheOpLabels {
		st.CacheOps[label] = s.cacheOps[k].Load()
	}
	if v := w.cur.Load(); v != nil {
		v.mu.Lock()
		st.IdleInstances = len(v.idle)
		st.BusyInstances = v.total - len(v.idle)
		v.mu.Unlock()
	}
	w.nsMu.Lock()
	for _, ns := range w.namespaces {
		st.LiveObjects += ns.Live()
	}
	w.nsMu.Unlock()
	st.WebSockets = int(w.ws.stats.open.Load())
	st.WebSocketMessagesIn, st.WebSocketMessagesOut = w.ws.stats.in.Load(), w.ws.stats.out.Load()
	if m := w.mem; m != nil {
		m.b.mu.Lock()
		st.Memory = m.used
		m.b.mu.Unlock()
	}
	return st
}
