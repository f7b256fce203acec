package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/worker"
)

// containerExitTimeout bounds delivering one container exit to its object.
const containerExitTimeout = 30 * time.Second

// newContainers returns the Manager of the workers' containers under the runtime cr. Its
// owner is derived from the data directory, so that the next Verge on the same data (after
// a kill -9, say) removes the containers this one leaves (docs/containers.md).
func newContainers(cr *config.ContainerRuntime, dataDir string, log *slog.Logger, reg func() *worker.Registry) (*containers.Manager, error) {
	var d containers.Driver
	switch cr.Driver {
	case config.ContainerDriverProcess:
		d = &containers.ProcessDriver{StopTimeout: cr.StopTimeout.Std()}
	default:
		d = &containers.Podman{
			Path: cr.Podman, Runtime: cr.OCIRuntime, CgroupManager: cr.CgroupManager,
			Ulimits: cr.Ulimits, StopTimeout: cr.StopTimeout.Std(),
		}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(abs))
	m, err := containers.New(containers.Options{
		Driver:   d,
		Owner:    hex.EncodeToString(sum[:8]),
		Logger:   log.With("component", "containers"),
		MaxTotal: cr.MaxInstances,
		OnExit: func(x containers.Exit) {
			ctx, cancel := context.WithTimeout(context.Background(), containerExitTimeout)
			defer cancel()
			if err := reg().ContainerExited(ctx, x); err != nil {
				log.Warn("container exit: notifying the object failed", "worker", x.Worker, "class", x.Class, "object", x.Object, "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	// A Verge killed with containers running, restarted with a configuration that has no
	// containers any more, removes them too: when Podman is installed, the orphans are
	// looked for at every start, not only when the first container class is deployed.
	if p, ok := d.(*containers.Podman); ok {
		if _, err := exec.LookPath(cmp.Or(p.Path, "podman")); err == nil {
			m.RemoveOrphansInBackground()
		}
	}
	return m, nil
}

// containerStopTimeout bounds stopping every container at exit.
func containerStopTimeout(cr *config.ContainerRuntime) time.Duration {
	t := cr.StopTimeout.Std()
	if t <= 0 {
		t = containers.DefaultStopTimeout
	}
	return t + 10*time.Second
}
