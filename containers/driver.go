// Package containers runs the containers bound to Durable Object classes (docs/containers.md):
// a Driver starts one instance from a Spec (an OCI image through Podman, or a local
// executable), and a Manager keeps, per worker and class, one instance per object: started on
// first use, reused while used, stopped after an idle time, restarted after a crash with a
// backoff, capped per class and in total, and all stopped on shutdown.
//
// Every instance listens on a port of the loopback interface only; Verge reaches it there.
package containers

import (
	"context"
	"errors"
	"io"
)

// Spec describes one instance to start.
type Spec struct {
	// Name is unique among the instances of a Manager; the Podman driver names the
	// container after it.
	Name string
	// Image is the image reference (Podman) or the executable's path (process driver).
	Image string
	// Env holds environment variables of the instance.
	Env map[string]string
	// Args are the arguments after the image's entry point (or the executable).
	Args []string
	// Port is the TCP port the instance listens on inside its container. The process
	// driver ignores it: the process listens on HostPort, given in the PORT variable.
	Port int
	// HostPort is the port of 127.0.0.1 the instance is reached at.
	HostPort int
	// CPU caps the CPUs the instance may use (1.5 is one and a half). Zero means no cap.
	CPU float64
	// Memory caps the instance's memory in bytes. Zero means no cap.
	Memory int64
	// Labels mark the instance (the Podman driver sets them as container labels), so that
	// a later start can find what an earlier process left behind (Driver.RemoveOrphans).
	Labels map[string]string
	// Output receives the instance's standard output and error. Nil discards them.
	Output io.Writer
}

// Driver starts instances. Implementations: Podman and Process.
type Driver interface {
	// Start starts an instance and returns once it was created; it may not listen yet.
	Start(ctx context.Context, s *Spec) (Process, error)
	// RemoveOrphans stops and removes the instances whose OwnerLabel is owner, left
	// running by an earlier process of the same owner that did not stop them (killed, or
	// crashed). It returns how many it removed.
	RemoveOrphans(ctx context.Context, owner string) (int, error)
}

// Process is a started instance.
type Process interface {
	// Done is closed when the instance has exited.
	Done() <-chan struct{}
	// ExitCode is the instance's exit status once Done is closed (-1 when unknown, for
	// example killed by a signal).
	ExitCode() int
	// Stop asks the instance to exit (SIGTERM), kills it after the driver's grace period,
	// and returns once it has exited, or when ctx ends.
	Stop(ctx context.Context) error
}

// Labels set on every instance a Manager starts.
const (
	// OwnerLabel identifies the Manager's owner (Options.Owner): the next Manager of the
	// same owner removes what carries it.
	OwnerLabel = "verge.owner"
	// WorkerLabel, ClassLabel and ObjectLabel name the worker, the class and the object
	// (its ID) the instance belongs to.
	WorkerLabel = "verge.worker"
	ClassLabel  = "verge.class"
	ObjectLabel = "verge.object"
)

// Errors of a Manager.
var (
	// ErrLimit is returned when starting an instance would exceed a class's MaxInstances or
	// the Manager's MaxTotal.
	ErrLimit = errors.New("container instance limit reached")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("container manager closed")
	// ErrNoClass is returned for a worker and class with no container configured.
	ErrNoClass = errors.New("no container configured for this class")
)
