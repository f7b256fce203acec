package containers

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Podman runs instances as Podman containers through its command line: one `podman run`
// per instance, attached, so that its output and its exit are the container's. Each
// container is started with --rm (removed when it exits), --replace, its labels, its port
// published on 127.0.0.1 only, the ulimits, CPU and memory caps given, and
// no-new-privileges. The zero value uses "podman" from PATH with Podman's own runtime
// settings.
type Podman struct {
	// Path is the podman executable. Empty means "podman" from PATH.
	Path string
	// Runtime is the OCI runtime (--runtime), e.g. "runc". Empty means Podman's default.
	Runtime string
	// CgroupManager is --cgroup-manager ("cgroupfs" or "systemd"). Empty means Podman's
	// default.
	CgroupManager string
	// Ulimits are --ulimit values ("nofile=1024:1024"). Nil means DefaultUlimits; an
	// empty non-nil slice sets none.
	Ulimits []string
	// StopTimeout is the grace period between SIGTERM and SIGKILL on Stop. Zero means
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// Pull is the --pull policy ("missing", "never", "always", "newer"). Empty means
	// "missing".
	Pull string
}

// DefaultUlimits are the ulimits of a container when Podman.Ulimits is nil: explicit values
// no higher than a typical host's, which Podman's own defaults may exceed.
var DefaultUlimits = []string{"nofile=1024:1024", "nproc=1024:1024"}

// DefaultStopTimeout is the grace period of a stop.
const DefaultStopTimeout = 10 * time.Second

var _ Driver = (*Podman)(nil)

func (p *Podman) path() string {
	if p.Path == "" {
		return "podman"
	}
	return p.Path
}

func (p *Podman) stopTimeout() time.Duration {
	if p.StopTimeout <= 0 {
		return DefaultStopTimeout
	}
	return p.StopTimeout
}

// global returns the global flags.
func (p *Podman) global() []string {
	var a []string
	if p.Runtime != "" {
		a = append(a, "--runtime", p.Runtime)
	}
	if p.CgroupManager != "" {
		a = append(a, "--cgroup-manager", p.CgroupManager)
	}
	return a
}

// RunArgs returns the arguments of the `podman run` that starts s (global flags included).
func (p *Podman) RunArgs(s *Spec) []string {
	a := p.global()
	pull := p.Pull
	if pull == "" {
		pull = "missing"
	}
	a = append(a, "run", "--rm", "--replace", "--name", s.Name, "--pull", pull,
		"--security-opt", "no-new-privileges", "--cap-drop", "NET_RAW",
		"--stop-timeout", strconv.Itoa(int(p.stopTimeout().Round(time.Second)/time.Second)),
		"--publish", fmt.Sprintf("127.0.0.1:%d:%d", s.HostPort, s.Port))
	ul := p.Ulimits
	if ul == nil {
		ul = DefaultUlimits
	}
	for _, u := range ul {
		a = append(a, "--ulimit", u)
	}
	if s.CPU > 0 {
		a = append(a, "--cpus", strconv.FormatFloat(s.CPU, 'f', -1, 64))
	}
	if s.Memory > 0 {
		a = append(a, "--memory", strconv.FormatInt(s.Memory, 10))
	}
	for _, k := range sortedKeys(s.Labels) {
		a = append(a, "--label", k+"="+s.Labels[k])
	}
	for _, k := range sortedKeys(s.Env) {
		a = append(a, "--env", k+"="+s.Env[k])
	}
	a = append(a, "--", s.Image)
	return append(a, s.Args...)
}

// Start runs `podman run` for s and returns once the command started; Done closes when it
// exits, that is when the container has exited (or failed to start: its output says why).
//
// The `podman run` client leads its own process group and, on Linux, gets SIGKILL when
// Verge exits, even by kill -9 (a parent-death signal, as for ProcessDriver): a client
// still pulling or creating the container when Verge dies would otherwise create it after
// the next Verge removed the orphans, and nothing would ever stop it. Once created, the
// container outlives its client (Podman's conmon keeps it), and the next Verge removes it.
func (p *Podman) Start(ctx context.Context, s *Spec) (Process, error) {
	cmd := exec.Command(p.path(), p.RunArgs(s)...)
	cmd.Stdout, cmd.Stderr = s.Output, s.Output
	cmd.WaitDelay = time.Second
	setProcAttr(cmd)
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("podman run: %w", err)
	}
	pr := &podmanProcess{p: p, name: s.Name, exit: newExit()}
	go pr.wait(cmd)
	return pr, nil
}

type podmanProcess struct {
	p    *Podman
	name string
	exit
}

// Stop runs `podman stop` with the grace period, then `podman rm -f` when the container
// is still there after it.
func (pr *podmanProcess) Stop(ctx context.Context) error {
	select {
	case <-pr.done:
		return nil
	default:
	}
	t := pr.p.stopTimeout()
	sctx, cancel := context.WithTimeout(ctx, t+10*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(t.Round(time.Second) / time.Second))
	out, err := pr.p.run(sctx, "stop", "--ignore", "-t", secs, pr.name)
	select {
	case <-pr.done:
		return nil
	case <-time.After(t):
	case <-ctx.Done():
	}
	if _, rerr := pr.p.run(context.WithoutCancel(ctx), "rm", "-f", "--ignore", "-t", "0", pr.name); rerr != nil && err == nil {
		err = rerr
	}
	select {
	case <-pr.done:
		return nil
	case <-ctx.Done():
		if err != nil {
			return fmt.Errorf("podman stop %s: %w: %s", pr.name, err, out)
		}
		return ctx.Err()
	}
}

// run runs a podman command and returns its combined output.
func (p *Podman) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, p.path(), append(p.global(), args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("podman %s: %w: %s", args[0], err, bytes.TrimSpace(out))
	}
	return out, nil
}

// RemoveOrphans removes, forcibly, every container labelled OwnerLabel=owner.
func (p *Podman) RemoveOrphans(ctx context.Context, owner string) (int, error) {
	out, err := p.run(ctx, "ps", "--all", "--quiet", "--no-trunc", "--filter", "label="+OwnerLabel+"="+owner)
	if err != nil {
		return 0, err
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return 0, nil
	}
	if _, err := p.run(ctx, append([]string{"rm", "--force", "--ignore", "-t", "0"}, ids...)...); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// Running lists the names of the running or created containers labelled OwnerLabel=owner.
func (p *Podman) Running(ctx context.Context, owner string) ([]string, error) {
	out, err := p.run(ctx, "ps", "--all", "--format", "{{.Names}}", "--filter", "label="+OwnerLabel+"="+owner)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
