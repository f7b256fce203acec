package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Container drivers (ContainerRuntime.Driver).
const (
	// ContainerDriverPodman runs containers with Podman (the default).
	ContainerDriverPodman = "podman"
	// ContainerDriverProcess runs each container's image as a local executable: for
	// development and hosts without a container runtime; not isolated.
	ContainerDriverProcess = "process"
)

// Defaults and bounds of containers (docs/containers.md).
const (
	// DefaultContainerPort is WorkerContainer.Port when zero.
	DefaultContainerPort = 8080
	// DefaultContainerSleepAfter is WorkerContainer.SleepAfter when zero.
	DefaultContainerSleepAfter = Duration(10 * 60 * 1e9)
	// DefaultContainerMaxInstances is WorkerContainer.MaxInstances when zero.
	DefaultContainerMaxInstances = 10
	// DefaultContainerTotal is ContainerRuntime.MaxInstances when zero.
	DefaultContainerTotal = 50
	// MaxContainerInstances bounds max_instances, per class and in total.
	MaxContainerInstances = 1000
	// MinContainerMemory is the least resources.memory accepted (Podman's own minimum).
	MinContainerMemory = 6 << 20
	// MaxWorkerContainers bounds a worker's container classes.
	MaxWorkerContainers = 32
)

// ContainerRuntime chooses and configures the driver of every worker's containers. It is
// fixed at start.
type ContainerRuntime struct {
	// Driver is "podman" (default) or "process" (see ContainerDriverProcess).
	Driver string `yaml:"driver"`
	// Podman is the podman executable. Empty means "podman" from PATH.
	Podman string `yaml:"podman"`
	// OCIRuntime is Podman's --runtime, e.g. "runc". Empty means Podman's default.
	OCIRuntime string `yaml:"oci_runtime"`
	// CgroupManager is Podman's --cgroup-manager: "cgroupfs" or "systemd". Empty means
	// Podman's default.
	CgroupManager string `yaml:"cgroup_manager"`
	// Ulimits are the --ulimit values of every container, e.g. "nofile=1024:1024". Empty
	// means nofile=1024:1024 and nproc=1024:1024.
	Ulimits []string `yaml:"ulimits"`
	// StopTimeout is the grace period between SIGTERM and SIGKILL when an instance stops.
	// Zero means 10s.
	StopTimeout Duration `yaml:"stop_timeout"`
	// MaxInstances caps the instances of all workers running at once. Zero means 50.
	MaxInstances int `yaml:"max_instances"`
}

// WorkerContainer binds a container image to a Durable Object class of the worker: each
// object of the class can run its own instance (docs/containers.md).
type WorkerContainer struct {
	// Class is the Durable Object class, one of the worker's durable_objects classes.
	// Required.
	Class string `yaml:"class"`
	// Image is the image reference (Podman), or the executable's path, relative to the
	// config file, with the process driver. Required.
	Image string `yaml:"image"`
	// Port is the TCP port the instance listens on inside its container. Zero means 8080.
	// The process driver passes the port to listen on in PORT instead.
	Port int `yaml:"port"`
	// MaxInstances caps the class's instances running at once. Zero means 10.
	MaxInstances int `yaml:"max_instances"`
	// SleepAfter stops an instance after this long without requests; the next request
	// starts it again. Zero means 10m.
	SleepAfter Duration `yaml:"sleep_after"`
	// StartTimeout bounds a start, until the instance's port accepts connections. Zero
	// means 60s.
	StartTimeout Duration `yaml:"start_timeout"`
	// Env holds environment variables of every instance (a start may add to them).
	Env map[string]string `yaml:"env"`
	// Args are arguments after the image's entry point (a start may replace them).
	Args []string `yaml:"args"`
	// Resources cap each instance.
	Resources ContainerResources `yaml:"resources"`
}

// ContainerResources cap one instance.
type ContainerResources struct {
	// CPU is the CPUs the instance may use, e.g. 0.5 or 2. Zero means no cap.
	CPU float64 `yaml:"cpu"`
	// Memory caps the instance's memory, at least 6MiB. Zero means no cap.
	Memory Size `yaml:"memory"`
}

// setContainerDefaults applies the defaults of w's containers.
func setContainerDefaults(w *Worker) {
	for i := range w.Containers {
		c := &w.Containers[i]
		if c.Port == 0 {
			c.Port = DefaultContainerPort
		}
		if c.MaxInstances == 0 {
			c.MaxInstances = DefaultContainerMaxInstances
		}
		if c.SleepAfter == 0 {
			c.SleepAfter = DefaultContainerSleepAfter
		}
	}
}

// resolveContainerPaths makes the process driver's executables absolute.
func (c *Config) resolveContainerPaths(dir string) {
	if c.ContainerRuntime.Driver != ContainerDriverProcess {
		return
	}
	for i := range c.Workers {
		c.Workers[i].AbsContainerImages(dir)
	}
}

// AbsContainerImages makes the relative images of w's containers absolute, relative to dir:
// the executables of the process driver (ContainerDriverProcess).
func (w *Worker) AbsContainerImages(dir string) {
	for i := range w.Containers {
		if img := &w.Containers[i].Image; *img != "" && !filepath.IsAbs(*img) {
			*img = filepath.Join(dir, *img)
		}
	}
}

// containerRuntime validates the container_runtime section.
func (v *validator) containerRuntime() {
	r := &v.c.ContainerRuntime
	switch r.Driver {
	case "", ContainerDriverPodman, ContainerDriverProcess:
	default:
		v.errf("container_runtime.driver", "unknown driver %q (use podman or process)", r.Driver)
	}
	switch r.CgroupManager {
	case "", "cgroupfs", "systemd":
	default:
		v.errf("container_runtime.cgroup_manager", "unknown cgroup manager %q (use cgroupfs or systemd)", r.CgroupManager)
	}
	for i, u := range r.Ulimits {
		name, val, ok := strings.Cut(u, "=")
		if !ok || name == "" || val == "" || strings.ContainsAny(u, " \t") {
			v.errf(fmt.Sprintf("container_runtime.ulimits[%d]", i), "ulimit %q: want name=soft:hard, e.g. nofile=1024:1024", u)
		}
	}
	if r.MaxInstances < 0 || r.MaxInstances > MaxContainerInstances {
		v.errf("container_runtime.max_instances", "max_instances %d: want 0 (the default, 50) to %d", r.MaxInstances, MaxContainerInstances)
	}
}

// workerContainers validates w's containers section; p is the worker's path.
func (v *validator) workerContainers(p string, w *Worker) {
	if len(w.Containers) > MaxWorkerContainers {
		v.errf(p+".containers", "%d containers exceed %d", len(w.Containers), MaxWorkerContainers)
	}
	classes := map[string]bool{}
	for _, d := range w.DurableObjects {
		classes[d.Class] = true
	}
	seen := map[string]bool{}
	for i := range w.Containers {
		c := &w.Containers[i]
		q := fmt.Sprintf("%s.containers[%d]", p, i)
		switch {
		case c.Class == "":
			v.errf(q+".class", "class is required (a Durable Object class of the worker)")
		case seen[c.Class]:
			v.errf(q+".class", "duplicate container class %q", c.Class)
		case !classes[c.Class]:
			v.errf(q+".class", "class %q has no durable_objects binding in this worker", c.Class)
		}
		seen[c.Class] = true
		if c.Image == "" {
			v.errf(q+".image", "image is required")
		} else if strings.HasPrefix(c.Image, "-") || strings.ContainsAny(c.Image, " \t\n") {
			v.errf(q+".image", "image %q: not an image reference", c.Image)
		}
		if c.Port < 1 || c.Port > 65535 {
			v.errf(q+".port", "port %d: want 1 to 65535", c.Port)
		}
		if c.MaxInstances < 1 || c.MaxInstances > MaxContainerInstances {
			v.errf(q+".max_instances", "max_instances %d: want 1 to %d", c.MaxInstances, MaxContainerInstances)
		}
		if c.SleepAfter < 0 {
			v.errf(q+".sleep_after", "sleep_after must not be negative")
		}
		if c.StartTimeout < 0 {
			v.errf(q+".start_timeout", "start_timeout must not be negative")
		}
		if len(c.Env) > 64 {
			v.errf(q+".env", "%d variables exceed 64", len(c.Env))
		}
		for name := range c.Env {
			if name == "" || strings.ContainsAny(name, "=\x00") {
				v.errf(q+".env", "variable name %q: must not be empty or hold '='", name)
			}
		}
		if len(c.Args) > 64 {
			v.errf(q+".args", "%d arguments exceed 64", len(c.Args))
		}
		if r := c.Resources; r.CPU < 0 || r.CPU > 1024 {
			v.errf(q+".resources.cpu", "cpu %g: want 0 (no cap) to 1024", r.CPU)
		}
		if m := c.Resources.Memory; m != 0 && m < MinContainerMemory {
			v.errf(q+".resources.memory", "memory %d is below 6MiB", int64(m))
		}
	}
}
