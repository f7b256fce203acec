package worker

import "fmt"

// ErrorKind says why an invocation failed.
type ErrorKind uint8

// Error kinds.
const (
	// Crashed: the guest trapped, panicked, exited, ran out of memory or failed to
	// initialize. The instance was discarded.
	Crashed ErrorKind = iota + 1
	// CPULimit: the guest executed longer than Limits.CPUTime. The instance was discarded.
	CPULimit
	// WallLimit: the invocation took longer than Limits.WallTime. The instance was discarded.
	WallLimit
	// NoResponse: the guest returned without producing a response.
	NoResponse
	// Overloaded: no instance became free before the request was canceled.
	Overloaded
	// Unavailable: the worker has no version deployed, or it was removed.
	Unavailable
	// MemoryLimit: the registry's memory limit for all instances (Services.MemoryLimit)
	// left no room for the request's instance, or for its growth, in time. An instance that
	// failed to grow was discarded.
	MemoryLimit
)

func (k ErrorKind) String() string {
	switch k {
	case Crashed:
		return "crashed"
	case CPULimit:
		return "cpu time limit exceeded"
	case WallLimit:
		return "wall time limit exceeded"
	case NoResponse:
		return "no response"
	case Overloaded:
		return "overloaded"
	case Unavailable:
		return "unavailable"
	case MemoryLimit:
		return "workers memory limit reached"
	}
	return "unknown"
}

// Error is a failed invocation.
type Error struct {
	// Kind classifies the failure.
	Kind ErrorKind
	// Worker is the worker's name.
	Worker string
	// Responded is true when a response head had already been sent: the caller can only
	// abort the exchange.
	Responded bool
	// Cause is the underlying error, if any.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("worker %s: %s: %v", e.Worker, e.Kind, e.Cause)
	}
	return fmt.Sprintf("worker %s: %s", e.Worker, e.Kind)
}

func (e *Error) Unwrap() error { return e.Cause }

// StatusCode is the status to answer the client with: 503 when the worker is overloaded,
// unavailable, out of shared memory or over a limit (as Cloudflare answers exceeded resource limits), 500 otherwise.
func (e *Error) StatusCode() int {
	switch e.Kind {
	case Overloaded, Unavailable, CPULimit, WallLimit, MemoryLimit:
		return 503
	}
	return 500
}
