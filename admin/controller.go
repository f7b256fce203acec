// Package admin is Verge's admin API: a small JSON-over-HTTP server on its own listener,
// loopback-only by default, for health and readiness probes, reading and loading the
// configuration, reloading, inspecting and draining upstream backends, and Prometheus metrics.
//
// It uses net/http (the admin API is not on the request path) and knows nothing of the
// configuration format or the load balancer: it drives the running server through the
// Controller interface, which the verge binary implements.
package admin

import (
	"context"
	"errors"
)

// ErrNotFound is returned (possibly wrapped) by Controller.SetDrain when the group or the
// backend address does not exist; the API answers 404.
var ErrNotFound = errors.New("not found")

// Controller is the running server as the admin API sees it. Its methods are called from the
// admin server's request goroutines, concurrently; they must be safe for that.
type Controller interface {
	// CurrentConfig returns the YAML of the configuration in effect.
	CurrentConfig() []byte
	// LoadConfig validates yaml and, when valid, makes it the configuration in effect, as a
	// hot reload does. An invalid config must leave the current one serving; the error text
	// is shown to the caller, so it should say where the problem is (line, column, field).
	LoadConfig(ctx context.Context, yaml []byte) error
	// Reload reads the configuration file again and applies it, as SIGHUP does.
	Reload(ctx context.Context) error
	// Upstreams returns the state of every backend of every upstream group.
	Upstreams() []UpstreamStatus
	// SetDrain starts (drain=true) or stops draining the backend address of group. A
	// draining backend takes no new requests; those in flight finish. Unknown group or
	// address: an error wrapping ErrNotFound.
	SetDrain(group, address string, drain bool) error
	// Ready reports whether the server is ready for traffic: configured, listening and not
	// shutting down.
	Ready() bool
}

// UpstreamStatus is one backend in the GET /upstreams answer.
type UpstreamStatus struct {
	// Group is the upstream group's name.
	Group string `json:"group"`
	// Address is the backend's host:port.
	Address string `json:"address"`
	// Weight is the backend's weight in the group (0 when the policy has none).
	Weight int `json:"weight"`
	// Healthy is the result of the active health checks (true when none run).
	Healthy bool `json:"healthy"`
	// Ejected is true while passive health checks keep the backend out after failures.
	Ejected bool `json:"ejected"`
	// Draining is true while the backend is drained through the API.
	Draining bool `json:"draining"`
	// InFlight counts the requests currently sent to the backend.
	InFlight int64 `json:"in_flight"`
	// Fails counts failed requests to the backend since it was first configured.
	Fails uint64 `json:"fails"`
}
