// Package sdk is the guest SDK for Verge workers written in Go. A worker is a WebAssembly
// module built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o worker.wasm .
//
// whose init function registers a handler; the host initializes the module once per instance
// and then calls the handler for each request, reusing the instance:
//
//	package main
//
//	import sdk "github.com/verge-edge/verge/sdk/go"
//
//	func init() {
//		sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
//			w.Header().Set("Content-Type", "text/plain")
//			w.Write([]byte("hello\n"))
//		})
//	}
//
//	func main() {}
//
// Bindings declared in the worker's configuration are reached by name: KV namespaces with
// KV, Durable Object namespaces with DurableObject (and classes defined with
// DefineDurableObject), other workers with Service, queues with Queue (and batches received
// with HandleQueue), environment variables and secrets with Env, outgoing requests with
// Fetch. HandleScheduled registers the handler cron triggers run. Calls into the host block
// the worker until they complete; there is one request in
// flight per instance, so handlers need no locking.
//
// The package compiles for other targets too (so that worker packages can be vetted and
// built with the rest of a module), but every host operation then fails with ErrUnavailable.
// docs/workers-abi.md documents the ABI underneath.
package sdk

import (
	"fmt"
	"github.com/verge-edge/verge/internal/workerabi"
	"os"
)

// ABIVersion is the version of the host ABI this SDK speaks, exported as verge_abi_version.
const ABIVersion = workerabi.Version

// ErrorCode classifies a failed host operation.
type ErrorCode uint32

// Error codes of host operations.
const (
	// ErrInternal is a host-side failure (storage, network).
	ErrInternal ErrorCode = workerabi.StatusInternal
	// ErrInvalid is a bad argument: a key too long, a value too large, an unknown ID.
	ErrInvalid ErrorCode = workerabi.StatusInvalid
	// ErrLimit is an exceeded limit, e.g. too many subrequests.
	ErrLimit ErrorCode = workerabi.StatusLimit
	// ErrUnavailable is an operation not possible here: an unbound name, storage outside a
	// Durable Object, or no host at all.
	ErrUnavailable ErrorCode = workerabi.StatusUnavailable
)

// Error is a failed host operation.
type Error struct {
	// Code classifies the failure.
	Code ErrorCode
	// Message is the host's description.
	Message string
}

func (e *Error) Error() string { return e.Message }

// Handler answers one request, like net/http's Handler.
type Handler interface {
	ServeHTTP(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w ResponseWriter, r *Request) { f(w, r) }

var handler Handler

// Serve registers the worker's request handler. Call it from an init function (or main):
// the host calls the handler once per request after the module has been initialized.
func Serve(h HandlerFunc) { handler = h }

// Handle registers h like Serve.
func Handle(h Handler) { handler = h }

// waitUntil holds work queued by WaitUntil for the current invocation.
var waitUntil []func()

// WaitUntil runs fn after the response has been sent, still within this invocation's wall
// time limit; the request's CPU time limit covers it too. Use it for logging, cache fills
// and other work the client need not wait for. Call it from the handler's own goroutine.
func WaitUntil(fn func()) { waitUntil = append(waitUntil, fn) }

var envCache map[string]string

// Env returns the environment variable or secret name from the worker's configuration, and
// "" if it is not set.
func Env(name string) string {
	if envCache == nil {
		envCache = map[string]string{}
		if res, err := rawCall(workerabi.OpEnv, nil); err == nil {
			d := workerabi.Decoder{B: res}
			h := decodeHeader(&d)
			for _, f := range h.fields {
				envCache[f.Name] = f.Value
			}
		}
	}
	return envCache[name]
}

// Log levels for Log.
const (
	LevelDebug = -4
	LevelInfo  = 0
	LevelWarn  = 4
	LevelError = 8
)

// Log writes a message to the host's log at level (LevelInfo etc.), tagged with the worker.
func Log(level int, format string, args ...any) {
	var e workerabi.Encoder
	e.U32(uint32(int32(level)))
	e.Str(fmt.Sprintf(format, args...))
	_, _ = rawCall(workerabi.OpLog, e.B)
}

// dispatch runs one invocation and returns its verge_handle result: workerabi.RCOK,
// RCFailed (the host answers 500 and discards the instance) or RCAlarmFailed (an alarm
// handler reported failure; the host retries the alarm and keeps the instance).
func dispatch(kind uint32) uint32 {
	lv := enterLevel()
	rc := dispatchKind(kind)
	lv.leave()
	return rc
}

// dispatchKind runs the invocation of dispatch.
func dispatchKind(kind uint32) uint32 {
	var err error
	switch kind {
	case workerabi.KindFetch:
		if handler == nil {
			fmt.Fprintln(os.Stderr, "verge sdk: no handler registered (call sdk.Serve in init)")
			return workerabi.RCFailed
		}
		err = serveRequest(handler)
	case workerabi.KindDOFetch:
		err = serveObject()
	case workerabi.KindDOAlarm:
		err = runAlarm()
	case workerabi.KindWSMessage, workerabi.KindWSClose, workerabi.KindWSError:
		err = runWebSocketEvent(kind)
	case workerabi.KindDOEvict:
		err = evictObject()
	case workerabi.KindScheduled:
		err = runScheduled()
	case workerabi.KindQueue:
		err = runQueue()
	case workerabi.KindContainerExit:
		err = runContainerExit()
	default:
		err = fmt.Errorf("unknown invocation kind %d", kind)
	}
	if err == errAlarmFailed {
		return workerabi.RCAlarmFailed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "verge sdk:", err)
		return workerabi.RCFailed
	}
	for i := 0; i < len(waitUntil); i++ {
		waitUntil[i]()
	}
	waitUntil = waitUntil[:0]
	return workerabi.RCOK
}
