package containers

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// State is an instance's state.
type State int

// States of an instance.
const (
	// Stopped: not running (never started, slept, stopped or exited with status 0).
	Stopped State = iota
	// Starting: started, its port not accepting connections yet.
	Starting
	// Running: its port accepts connections.
	Running
	// Stopping: asked to stop, not exited yet.
	Stopping
	// Crashed: exited with a failure (or failed to start); restarted after a backoff.
	Crashed
)

var stateNames = [...]string{"stopped", "starting", "running", "stopping", "crashed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ClassConfig configures the container of one Durable Object class of a worker.
type ClassConfig struct {
	// Class is the Durable Object class. Required.
	Class string
	// Image is the image reference (Podman) or executable path (process driver). Required.
	Image string
	// Port is the port the instance listens on inside its container. Required for Podman.
	Port int
	// Env are environment variables of every instance; StartOptions.Env adds to them.
	Env map[string]string
	// Args are the arguments after the image's entry point, unless StartOptions.Args
	// replaces them.
	Args []string
	// CPU and Memory cap each instance (zero: no cap).
	CPU    float64
	Memory int64
	// SleepAfter stops an instance this long after its last request ended. Zero means
	// DefaultSleepAfter.
	SleepAfter time.Duration
	// MaxInstances caps the class's instances that run (or start, or stop) at once. Zero
	// means DefaultMaxInstances.
	MaxInstances int
	// StartTimeout bounds a start. Zero means DefaultStartTimeout.
	StartTimeout time.Duration
}

// StartOptions are the options of an explicit start (the object's start call).
type StartOptions struct {
	// Env adds to and overrides ClassConfig.Env.
	Env map[string]string
	// Args are the arguments after the image's entry point. Nil means ClassConfig.Args;
	// an empty slice means none.
	Args []string
}

// Check bounds o.
func (o *StartOptions) Check() error {
	if len(o.Env) > MaxStartEnv {
		return fmt.Errorf("%d environment variables exceed %d", len(o.Env), MaxStartEnv)
	}
	if len(o.Args) > MaxStartArgs {
		return fmt.Errorf("%d arguments exceed %d", len(o.Args), MaxStartArgs)
	}
	for k, v := range o.Env {
		if k == "" || len(k) > MaxStartValue || len(v) > MaxStartValue {
			return fmt.Errorf("environment variable %.40q: empty name or longer than %d bytes", k, MaxStartValue)
		}
		for _, c := range []byte(k) {
			if c == '=' || c == 0 {
				return fmt.Errorf("environment variable %.40q: bad name", k)
			}
		}
	}
	for _, a := range o.Args {
		if len(a) > MaxStartValue {
			return fmt.Errorf("argument longer than %d bytes", MaxStartValue)
		}
	}
	return nil
}

// Exit reports an instance that stopped or exited.
type Exit struct {
	Worker, Class, Object string
	// Code is the exit status (-1 when unknown).
	Code int
	// Reason is "stopped" (Stop), "sleep" (idle), "exited" (status 0 on its own),
	// "crashed" (a failure status, or a start that failed), or "shutdown" (Close or a
	// redeploy).
	Reason string
}

// Options configure a Manager.
type Options struct {
	// Driver starts instances. Required.
	Driver Driver
	// Owner identifies this Manager's instances across restarts (OwnerLabel): New removes
	// what an earlier Manager of the same owner left running. Required.
	Owner string
	// Logger receives lifecycle events and the instances' output, with the worker, class
	// and object. Nil means slog.Default().
	Logger *slog.Logger
	// MaxTotal caps the instances of all classes running at once. Zero means
	// DefaultMaxTotal.
	MaxTotal int
	// OnExit, when set, is called on a goroutine of its own after an instance exited.
	OnExit func(Exit)
}
