package containers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ProcessDriver runs instances as local processes: Spec.Image is the executable's path, run
// with Spec.Args, Spec.Env (added to Verge's environment) and PORT set to Spec.HostPort (the
// process must listen on 127.0.0.1:$PORT). It is meant for development and for hosts
// without a container runtime: it is NOT isolated. The process runs as Verge's user, sees
// its files and network, and CPU and Memory are not enforced. Each process leads its own
// process group; on Linux it gets SIGKILL when Verge exits, even when Verge is killed
// (a parent-death signal), so there are no orphans to remove.
type ProcessDriver struct {
	// StopTimeout is the grace period between SIGTERM and SIGKILL. Zero means
	// DefaultStopTimeout.
	StopTimeout time.Duration
}

var _ Driver = (*ProcessDriver)(nil)

// Start starts the executable.
func (d *ProcessDriver) Start(ctx context.Context, s *Spec) (Process, error) {
	cmd := exec.Command(s.Image, s.Args...)
	env := os.Environ()
	for _, k := range sortedKeys(s.Env) {
		env = append(env, k+"="+s.Env[k])
	}
	cmd.Env = append(env, "PORT="+strconv.Itoa(s.HostPort))
	cmd.Stdout, cmd.Stderr = s.Output, s.Output
	cmd.WaitDelay = time.Second
	setProcAttr(cmd)
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", s.Image, err)
	}
	t := d.StopTimeout
	if t <= 0 {
		t = DefaultStopTimeout
	}
	pr := &localProcess{cmd: cmd, grace: t, exit: newExit()}
	go pr.wait(cmd)
	return pr, nil
}

// RemoveOrphans does nothing: processes die with Verge (see ProcessDriver).
func (d *ProcessDriver) RemoveOrphans(context.Context, string) (int, error) { return 0, nil }

type localProcess struct {
	cmd   *exec.Cmd
	grace time.Duration
	exit
}

// Stop sends SIGTERM to the process group, SIGKILL after the grace period.
func (pr *localProcess) Stop(ctx context.Context) error {
	signalGroup(pr.cmd, syscall.SIGTERM)
	t := time.NewTimer(pr.grace)
	defer t.Stop()
	select {
	case <-pr.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	signalGroup(pr.cmd, syscall.SIGKILL)
	select {
	case <-pr.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// spawner starts processes from one goroutine locked to its OS thread for the life of the
// program: a parent-death signal is tied to the thread that forked, so a thread that ends
// (a goroutine that exits while locked to it) would kill the processes it started.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go spawnLoop(spawner.reqs)
	})
	r := spawnReq{cmd: cmd, errc: make(chan error, 1)}
	spawner.reqs <- r
	return <-r.errc
}

// spawnLoop starts the commands it receives; it never returns.
func spawnLoop(reqs chan spawnReq) {
	runtime.LockOSThread()
	for r := range reqs {
		r.errc <- r.cmd.Start()
	}
}
