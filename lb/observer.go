package lb

import "time"

// EventKind names a change a Balancer reports to its Observer.
type EventKind uint8

const (
	// BackendAdded: a backend joined the set (configuration or discovery).
	BackendAdded EventKind = iota + 1
	// BackendRemoved: a backend left the set.
	BackendRemoved
	// BackendUp: active health checks found the backend healthy again.
	BackendUp
	// BackendDown: active health checks marked the backend unhealthy; Err is the last
	// check's error.
	BackendDown
	// BackendEjected: passive health ejected the backend until Until.
	BackendEjected
	// BackendRestored: an ejected backend passed its trial request.
	BackendRestored
	// DiscoveryFailed: a discovery round failed; the last good set stays. Backend is nil.
	DiscoveryFailed
)

var eventNames = [...]string{
	BackendAdded: "added", BackendRemoved: "removed", BackendUp: "up", BackendDown: "down",
	BackendEjected: "ejected", BackendRestored: "restored", DiscoveryFailed: "discovery failed",
}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one change in a Balancer's backends.
type Event struct {
	Kind EventKind
	// Backend is the backend concerned; nil for DiscoveryFailed.
	Backend *Backend
	// Err is the health check or discovery error behind BackendDown and DiscoveryFailed.
	Err error
	// Until is the end of the cool-down for BackendEjected.
	Until time.Time
}

// Observer receives a Balancer's events, for metrics and logs without a metrics dependency.
// Observe is called synchronously from the goroutine that caused the change (a request
// finishing, the health checker, discovery); it must be fast and must not call back into the
// Balancer's Update.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }
