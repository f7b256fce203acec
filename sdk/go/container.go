package sdk

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/verge-edge/verge/internal/workerabi"
)

// Container is the container of a Durable Object whose class has one (the worker's config
// field containers): an instance of an image, or of a local executable, that Verge runs for
// this object alone, started on first use and stopped after the class's sleep_after without
// requests. Get it with DurableObjectState.Container; its methods act on the object that
// is running, so call them while handling that object's invocation.
type Container struct{}

// Container returns the object's container.
func (s *DurableObjectState) Container() *Container { return &Container{} }

// ContainerState is the state of a container.
type ContainerState int

// States of a container.
const (
	// ContainerStopped: not running (never started, slept, stopped, or exited with 0).
	ContainerStopped ContainerState = workerabi.ContainerStopped
	// ContainerStarting: started, its port not accepting connections yet.
	ContainerStarting ContainerState = workerabi.ContainerStarting
	// ContainerRunning: its port accepts connections.
	ContainerRunning ContainerState = workerabi.ContainerRunning
	// ContainerStopping: asked to stop, not exited yet.
	ContainerStopping ContainerState = workerabi.ContainerStopping
	// ContainerCrashed: exited with a failure; it restarts after a backoff.
	ContainerCrashed ContainerState = workerabi.ContainerCrashed
)

func (s ContainerState) String() string {
	switch s {
	case ContainerStopped:
		return "stopped"
	case ContainerStarting:
		return "starting"
	case ContainerRunning:
		return "running"
	case ContainerStopping:
		return "stopping"
	case ContainerCrashed:
		return "crashed"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ContainerStartOptions are the options of Container.Start.
type ContainerStartOptions struct {
	// Env adds environment variables to the configured ones (at most 64).
	Env map[string]string
	// Args replace the configured arguments when not nil (at most 64).
	Args []string
}

// Start starts the container with o (nil: the configured environment and arguments) unless
// it runs already, and returns once its port accepts connections. The options stay for the
// container's later starts (after it slept or crashed).
func (c *Container) Start(o *ContainerStartOptions) error {
	var e workerabi.Encoder
	if o == nil {
		o = &ContainerStartOptions{}
	}
	e.U32(uint32(len(o.Env)))
	for k, v := range o.Env {
		e.Str(k)
		e.Str(v)
	}
	if o.Args == nil {
		e.U8(0)
	} else {
		e.U8(1)
		e.U32(uint32(len(o.Args)))
		for _, a := range o.Args {
			e.Str(a)
		}
	}
	_, err := rawCall(workerabi.OpContainerStart, e.B)
	return err
}

// Fetch sends r to the container's port, starting the container first when it does not
// run, and returns the response once its head arrived; Body streams the rest. The host of
// r's URL is not used to connect (only its path and query), so "http://container/path"
// does. It counts against the worker's subrequest limit. When r's body is the incoming
// request's Body (r itself, or a request made with that Body), unread or partly read, the
// host streams the rest of it to the container as it arrives; any other body is read whole
// first.
func (c *Container) Fetch(r *Request) (*Response, error) {
	var e workerabi.Encoder
	return sendRequest(&e, r, workerabi.OpContainerFetchBody, workerabi.OpContainerFetch, nil)
}

// State returns the container's state.
func (c *Container) State() (ContainerState, error) {
	res, err := rawCall(workerabi.OpContainerState, nil)
	if err != nil {
		return 0, err
	}
	d := workerabi.Decoder{B: res}
	s := ContainerState(d.U8())
	return s, d.Err
}

// Stop stops the container (SIGTERM, then SIGKILL after the grace period) and returns once
// it exited. The next Fetch or Start starts it again.
func (c *Container) Stop() error {
	_, err := rawCall(workerabi.OpContainerStop, nil)
	return err
}

// ContainerExit describes a container that exited.
type ContainerExit struct {
	// Code is the exit status, -1 when unknown.
	Code int
	// Reason is "stopped" (Container.Stop), "sleep" (idle for sleep_after), "exited"
	// (status 0 on its own) or "crashed" (a failure status; it restarts after a backoff).
	Reason string
}

// ContainerExitHandler is implemented by Durable Object classes that want to know when
// their container exits: the host runs ContainerExited in the object (with its storage)
// after each exit.
type ContainerExitHandler interface {
	ContainerExited(e ContainerExit)
}

// runContainerExit runs a KindContainerExit invocation.
func runContainerExit() error {
	o, _, err := objectContext()
	if err != nil {
		return err
	}
	h, ok := o.h.(ContainerExitHandler)
	if !ok {
		return nil
	}
	res, err := rawCall(workerabi.OpContainerExit, nil)
	if err != nil {
		return err
	}
	d := workerabi.Decoder{B: res}
	x := ContainerExit{Code: int(int32(d.U32())), Reason: d.Str()}
	if d.Err != nil {
		return d.Err
	}
	h.ContainerExited(x)
	return nil
}

// DefineContainer defines the Durable Object class named class as a plain front for its
// container: every request to one of its objects goes to that object's container (started
// on first use), and the container's response comes back as it streams. Workers reach an
// instance by name with ContainerByName or a random one of a pool with ContainerPool.
func DefineContainer(class string) {
	DefineDurableObject(class, func(s *DurableObjectState) DurableObjectHandler {
		return containerFront{c: s.Container()}
	})
}

// containerFront is the object of a class defined with DefineContainer.
type containerFront struct{ c *Container }

func (f containerFront) Fetch(w ResponseWriter, r *Request) {
	resp, err := f.c.Fetch(r)
	if err != nil {
		status := 502
		if e, ok := err.(*Error); ok && e.Code == ErrLimit {
			status = 503
		}
		ErrorResponse(w, "container: "+err.Error(), status)
		return
	}
	WriteResponse(w, resp)
}

// ContainerByName returns the object named name of the Durable Object namespace bound as
// binding, whose class has a container: its Fetch reaches that object, and through it (with
// DefineContainer, or the class's own Fetch) its container.
func ContainerByName(binding, name string) ObjectID {
	return DurableObject(binding).IDFromName(name)
}

// ContainerPool returns one of n objects ("instance-0" to "instance-<n-1>") of the
// namespace bound as binding, picked at random: requests spread over up to n containers.
func ContainerPool(binding string, n int) ObjectID {
	if n < 1 {
		n = 1
	}
	return ContainerByName(binding, fmt.Sprintf("instance-%d", rand.IntN(n)))
}
