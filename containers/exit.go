package containers

import (
	"errors"
	"os/exec"
)

// exit is how an instance's process ended; the drivers' instances embed it for Done and
// ExitCode.
type exit struct {
	done chan struct{}
	code int
}

func newExit() exit { return exit{done: make(chan struct{}), code: -1} }

// wait owns cmd until it exits, then records its code and closes done.
func (x *exit) wait(cmd *exec.Cmd) {
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		x.code = 0
	case errors.As(err, &ee):
		x.code = ee.ExitCode()
	}
	close(x.done)
}

// Done is closed when the process exited.
func (x *exit) Done() <-chan struct{} { return x.done }

// ExitCode is the process's exit code once it exited, -1 before or when unknown.
func (x *exit) ExitCode() int {
	select {
	case <-x.done:
		return x.code
	default:
		return -1
	}
}
