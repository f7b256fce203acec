package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/verge-edge/verge/cache"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/internal/scaffold"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// devShutdownTimeout bounds draining `verge dev` on a signal.
const devShutdownTimeout = 5 * time.Second

// devCacheSize is the memory of the Cache API under verge dev.
const devCacheSize = 64 << 20

// cmdDev builds the Go worker package at PATH (default: the current directory), serves it
// with local KV and Durable Objects, and rebuilds and redeploys it when its sources change
// (polling modification times). It binds its address first: until a build succeeds, clients
// get 503 with "building" or the compiler's output, and a failed build waits for a fix.
// With --init, a PATH without go.mod first gets a hello worker project (see cmdInit).
func cmdDev(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", "dev [--init] [--listen ADDR] [--data DIR] [--poll DURATION] [--test-scheduled] [--container-driver podman|process] [PATH]", stderr)
	testScheduled := fs.Bool("test-scheduled", false, "answer GET /__scheduled?cron=EXPR by running the worker's scheduled handler (cron triggers do not fire by themselves in dev)")
	initProj := fs.Bool("init", false, "when PATH has no go.mod, first write a hello worker project there (as verge init does)")
	listen := fs.String("listen", "127.0.0.1:8787", "`address` to serve the worker on")
	data := fs.String("data", ".verge", "`directory` for KV namespaces, Durable Objects and compiled code")
	poll := fs.Duration("poll", 500*time.Millisecond, "how often to look for changed sources")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	containerDriver := fs.String("container-driver", config.ContainerDriverPodman, "`driver` of the worker's containers: podman, or process (a local executable, not isolated)")
	ociRuntime := fs.String("oci-runtime", "", "Podman's OCI `runtime` for the containers (e.g. runc); empty: Podman's default")
	cgroupManager := fs.String("cgroup-manager", "", "Podman's cgroup `manager` for the containers (cgroupfs or systemd); empty: Podman's default")
	path, err := parseWithPath(fs, args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "verge dev: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *initProj {
		if _, err := os.Stat(filepath.Join(path, "go.mod")); errors.Is(err, os.ErrNotExist) {
			if err := initProject(scaffold.Options{Dir: path, Version: versionString()}, "dev", stderr, stderr); err != nil {
				return err
			}
		}
	}
	if *containerDriver != config.ContainerDriverPodman && *containerDriver != config.ContainerDriverProcess {
		fmt.Fprintf(stderr, "verge dev: --container-driver %q: want podman or process\n", *containerDriver)
		return errUsage
	}
	def, err := loadWorkerDef(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError(1)
	}
	if *containerDriver == config.ContainerDriverProcess {
		// The process driver's executables, relative to the worker's directory (as verge
		// run takes them relative to the config).
		def.AbsContainerImages(path)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	var self selfAddrs
	if x, ok := listenerAddr(ln.Addr(), false); ok {
		self.set([]worker.Listener{x})
	}
	tr := &upstream.Transport{}
	defer tr.Close()
	// The Cache API's storage: memory only, as with wrangler dev.
	hc, err := cache.New(cache.Options{MemorySize: devCacheSize})
	if err != nil {
		ln.Close()
		return err
	}
	defer hc.Close()
	stack, err := newWorkerStack(*data, 0, self.get, log, nil, nil, hc, &config.ContainerRuntime{
		Driver: *containerDriver, OCIRuntime: *ociRuntime, CgroupManager: *cgroupManager,
	})
	if err != nil {
		ln.Close()
		return err
	}
	defer stack.close()
	d := &devServer{def: def, dir: path, data: *data, stack: stack, log: log, stderr: stderr, testScheduled: *testScheduled}
	d.state.Store(&devState{building: true})
	srv := &server.Server{
		Handler: &proxy.Proxy[struct{}]{Phases: &devPhases{d: d}, Transport: tr, Logger: log},
		Logger:  log,
	}
	served := make(chan error, 1)
	go serveDev(srv, ln, served)
	fmt.Fprintf(stdout, "verge dev: worker %s on http://%s (data in %s; rebuilding on change)\n", def.Name, ln.Addr(), *data)
	if *testScheduled {
		fmt.Fprintf(stdout, "verge dev: run the scheduled handler with http://%s/__scheduled?cron=*+*+*+*+*\n", ln.Addr())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stamp, _ := worker.SourceStamp(path)
	d.build(ctx)
	tick := time.NewTicker(*poll)
	defer tick.Stop()
	for {
		select {
		case err := <-served:
			return fmt.Errorf("dev: %w", err)
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), devShutdownTimeout)
			defer cancel()
			return srv.Shutdown(sctx)
		case <-tick.C:
			s, err := worker.SourceStamp(path)
			if err != nil || s == stamp {
				continue
			}
			stamp = s
			log.Info("sources changed; rebuilding", "worker", def.Name)
			d.build(ctx)
		}
	}
}

// serveDev runs the dev server until it is shut down.
func serveDev(srv *server.Server, ln net.Listener, done chan<- error) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, server.ErrServerClosed) {
		done <- err
	}
}

// parseWithPath parses flags placed before or after the one optional positional PATH
// argument (default: the current directory).
func parseWithPath(fs *flag.FlagSet, args []string) (string, error) {
	if probed(fs) {
		return "", errProbed
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", errUsage
	}
	path := "."
	if fs.NArg() > 0 {
		path = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return "", err
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(fs.Output(), "verge %s: one PATH only (got %q too)\n", fs.Name(), fs.Arg(0))
			fs.Usage()
			return "", errUsage
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return abs, nil
}

// loadWorkerDef reads PATH/worker.yaml, or makes a definition without bindings named after
// the directory.
func loadWorkerDef(dir string) (*config.Worker, error) {
	name := filepath.Join(dir, config.WorkerFile)
	data, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return config.ParseWorker(name, []byte("name: "+filepath.Base(dir)+"\n"))
	}
	if err != nil {
		return nil, err
	}
	w, err := config.ParseWorker(name, data)
	if err != nil {
		return nil, err
	}
	if w.Module != "" {
		return nil, fmt.Errorf("%s: verge dev builds the package; remove module", name)
	}
	w.Package = dir
	return w, nil
}

// devServer builds and deploys the worker under development.
type devServer struct {
	def    *config.Worker
	dir    string
	data   string
	stack  *workerStack
	log    *slog.Logger
	stderr io.Writer
	state  atomic.Pointer[devState]
	// testScheduled makes GET /__scheduled run the scheduled handler (--test-scheduled).
	testScheduled bool
}

// devState is what requests are answered with.
type devState struct {
	w        *worker.Worker // nil until a build succeeded
	building bool           // the first build is running
	failed   string         // the first builds' compiler output, until one succeeds
}

// build builds and deploys the worker. A failure prints the compiler's output verbatim;
// the previous version, if any, keeps serving, and otherwise clients get the output.
func (d *devServer) build(ctx context.Context) {
	cur := d.state.Load()
	if cur.w == nil {
		d.state.Store(&devState{building: true})
	}
	err := d.deploy(ctx)
	if err == nil {
		d.state.Store(&devState{w: d.stack.reg.Get(d.def.Name)})
		return
	}
	if ctx.Err() != nil {
		return
	}
	text := err.Error()
	var be *worker.BuildError
	if errors.As(err, &be) {
		text = be.Output
		if text == "" {
			text = be.Err.Error()
		}
	}
	if cur.w != nil {
		fmt.Fprintf(d.stderr, "verge dev: build failed; the previous version keeps serving:\n%s\n", text)
		return
	}
	fmt.Fprintf(d.stderr, "verge dev: build failed; waiting for a fix:\n%s\n", text)
	d.state.Store(&devState{failed: text})
}

func (d *devServer) deploy(ctx context.Context) error {
	out := filepath.Join(d.data, "build", d.def.Name+".wasm")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := worker.BuildGo(ctx, d.dir, out, worker.BuildOptions{}); err != nil {
		return err
	}
	built := time.Since(start)
	wc, err := router.WorkerBindings(d.def)
	if err != nil {
		return err
	}
	if wc.Module, err = os.ReadFile(out); err != nil {
		return err
	}
	// On the developer's own machine the worker may fetch local services: loopback is
	// allowed (verge dev's own listener still is not). Other private ranges need fetch.allow
	// in worker.yaml, as in production.
	wc.Fetch.Allow = append(slices.Clone(devFetchAllow), wc.Fetch.Allow...)
	v, err := d.stack.reg.Deploy(ctx, wc)
	if err != nil {
		return err
	}
	d.log.Info("worker ready", "worker", d.def.Name, "version", v.ID, "build", built.Round(time.Millisecond), "compile", v.Compile.Round(time.Millisecond))
	return nil
}

// devFetchAllow is what verge dev adds to a worker's fetch allow list.
var devFetchAllow = []string{"127.0.0.0/8", "::1"}

// devPhases sends every request to the worker and prints a line per request.
type devPhases struct {
	proxy.Base[struct{}]
	d *devServer
}

var errNoOrigin = errors.New("verge dev has no origin")

// Request runs the worker, or answers 503 while there is no built version.
func (p *devPhases) Request(s *proxy.Session, _ *struct{}) (bool, error) {
	st := p.d.state.Load()
	if st.w == nil {
		h := &message.Header{}
		h.Add("Content-Type", "text/plain; charset=utf-8")
		h.Add("Cache-Control", "no-store")
		h.Add("Retry-After", "1")
		var body string
		if st.building {
			h.Add("X-Verge-Dev", "building")
			body = fmt.Sprintf("verge dev: building worker %s...\n", p.d.def.Name)
		} else {
			h.Add("X-Verge-Dev", "build-failed")
			body = fmt.Sprintf("verge dev: worker %s failed to build; fix it and it is rebuilt:\n\n%s\n", p.d.def.Name, st.failed)
		}
		return true, s.Respond(503, h, []byte(body))
	}
	if p.d.testScheduled && isScheduledPath(s.Req.Target) {
		return true, p.d.runScheduled(s, st.w)
	}
	req := &worker.Request{Message: s.Req}
	if ca := s.ClientAddr(); ca.IsValid() {
		req.RemoteAddr = ca.Addr().Unmap().String()
	}
	res, err := st.w.Serve(s.Context(), s.Exchange(), req)
	s.BytesSent += res.BytesSent
	if res.Status != 0 {
		s.Status = res.Status
	}
	if err == nil {
		return true, nil
	}
	status := 500
	var we *worker.Error
	if errors.As(err, &we) {
		status = we.StatusCode()
	}
	return true, &fault.Error{Source: fault.Internal, Kind: fault.Unknown, Status: status, Cause: err}
}

// UpstreamPeer is never reached: Request answers every request.
func (p *devPhases) UpstreamPeer(*proxy.Session, *struct{}) (*upstream.Peer, error) {
	return nil, errNoOrigin
}

// Logging prints one line per request: method, target, status and duration.
func (p *devPhases) Logging(s *proxy.Session, ferr *fault.Error, _ *struct{}) {
	if s.Req == nil {
		return
	}
	status := s.Status
	if status == 0 && ferr != nil {
		status = ferr.StatusCode()
	}
	fmt.Fprintf(p.d.stderr, "%s %s %d %v\n", s.Req.Method, s.Req.Target, status, time.Since(s.Start).Round(10*time.Microsecond))
}
