package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// devShutdownTimeout bounds draining `verge dev` on a signal.
const devShutdownTimeout = 5 * time.Second

// cmdDev builds the Go worker package at PATH, serves it with local KV and Durable Objects,
// and rebuilds and redeploys it when its sources change (polling modification times).
func cmdDev(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", "dev [--listen ADDR] [--data DIR] [--poll DURATION] PATH", stderr)
	listen := fs.String("listen", "127.0.0.1:8787", "`address` to serve the worker on")
	data := fs.String("data", ".verge", "`directory` for KV namespaces, Durable Objects and compiled code")
	poll := fs.Duration("poll", 500*time.Millisecond, "how often to look for changed sources")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
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
	def, err := loadWorkerDef(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError(1)
	}
	tr := &upstream.Transport{}
	defer tr.Close()
	stack, err := newWorkerStack(*data, 0, tr, log)
	if err != nil {
		return err
	}
	defer stack.close()
	d := &devServer{def: def, dir: path, data: *data, stack: stack, log: log}
	if err := d.build(); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError(1)
	}
	w := stack.reg.Get(def.Name)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	srv := &server.Server{
		Handler: &proxy.Proxy[struct{}]{Phases: &devPhases{w: w}, Transport: tr, Logger: log},
		Logger:  log,
	}
	served := make(chan error, 1)
	go serveDev(srv, ln, served)
	fmt.Fprintf(stdout, "verge dev: worker %s on http://%s (data in %s; rebuilding on change)\n", def.Name, ln.Addr(), *data)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stamp, _ := worker.SourceStamp(path)
	tick := time.NewTicker(*poll)
	defer tick.Stop()
	for {
		select {
		case err := <-served:
			return fmt.Errorf("dev: %w", err)
		case <-sigs:
			ctx, cancel := context.WithTimeout(context.Background(), devShutdownTimeout)
			defer cancel()
			return srv.Shutdown(ctx)
		case <-tick.C:
			s, err := worker.SourceStamp(path)
			if err != nil || s == stamp {
				continue
			}
			stamp = s
			log.Info("sources changed; rebuilding", "worker", def.Name)
			if err := d.build(); err != nil {
				log.Error("rebuild failed; the previous version keeps serving", "err", err)
			}
		}
	}
}

// serveDev runs the dev server until it is shut down.
func serveDev(srv *server.Server, ln net.Listener, done chan<- error) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, server.ErrServerClosed) {
		done <- err
	}
}

// parseWithPath parses flags placed before or after the one positional PATH argument.
func parseWithPath(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(fs.Output(), "verge %s: PATH is required\n", fs.Name())
		fs.Usage()
		return "", errUsage
	}
	path := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
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
	def   *config.Worker
	dir   string
	data  string
	stack *workerStack
	log   *slog.Logger
}

func (d *devServer) build() error {
	ctx := context.Background()
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
	v, err := d.stack.reg.Deploy(ctx, wc)
	if err != nil {
		return err
	}
	d.log.Info("worker ready", "worker", d.def.Name, "version", v.ID, "build", built.Round(time.Millisecond), "compile", v.Compile.Round(time.Millisecond))
	return nil
}

// devPhases sends every request to the worker.
type devPhases struct {
	proxy.Base[struct{}]
	w *worker.Worker
}

var errNoOrigin = errors.New("verge dev has no origin")

// Request runs the worker.
func (p *devPhases) Request(s *proxy.Session, _ *struct{}) (bool, error) {
	req := &worker.Request{Message: s.Req}
	if ci := s.Conn(); ci != nil && ci.RemoteAddr.IsValid() {
		req.RemoteAddr = ci.RemoteAddr.Addr().Unmap().String()
	}
	res, err := p.w.Serve(s.Context(), s.Exchange(), req)
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
