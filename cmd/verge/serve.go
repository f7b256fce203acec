package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/purge"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/h3"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/overload"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/upstream"
)

// upgradeTimeout bounds how long a new process may take to become ready during a binary
// upgrade before the old one gives up on it and keeps serving.
const upgradeTimeout = time.Minute

// h3HandoverFile names the HTTP/3 hand-over channel among the files passed to the new
// process during an upgrade.
const h3HandoverFile = "verge-h3-handover"

// fastStopTimeout bounds a SIGINT stop.
const fastStopTimeout = time.Second

// cmdRun serves a config file until a signal stops it.
func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run", "run -c FILE", stderr)
	file := fs.String("c", "verge.yaml", "config `file`")
	pidFile := fs.String("pid-file", "", "write the pid to this `file` (default: the config's pid_file, else one named after the config file's path, e.g. "+config.DefaultPIDFileFor("verge.yaml")+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError(1)
	}
	if *pidFile != "" {
		cfg.PIDFile = *pidFile
	}
	s := &serverProc{file: *file, pidFile: cfg.PIDFile}
	return s.serve(cfg)
}

// serverProc is a running verge process: the router runtime with its shared parts, the admin
// API, the upgrader and the signal loop. It implements admin.Controller.
type serverProc struct {
	file    string // config file to reload from; "" when the config was built in memory
	pidFile string // "" for no pid file

	log       *slog.Logger
	errLog    *observe.ErrorLog
	metrics   *observe.Metrics
	transport *upstream.Transport
	store     *lb.StateStore
	limits    *router.RateLimits
	overload  *overload.Monitor
	cache     *cache.Cache // nil until serve builds it
	workers   *workerStack // nil until serve builds it
	self      selfAddrs    // own listeners, for the workers' fetch policy
	rt        *router.Runtime
	upg       *tableflip.Upgrader // nil where upgrades are not supported
	listen    func(network, addr string) (net.Listener, error)
	listenUDP func(network, addr string) (net.PacketConn, error)

	mu      sync.Mutex // serializes reloads and admin restarts
	adm     *admin.Server
	admKey  string
	admSock *router.Handoff
	admAddr string
	// admPublic is admAddr for readers that do not hold mu (the cluster's member answers).
	admPublic atomic.Pointer[string]
	cluster   *cluster.Node // nil without a cluster section
	deploys   *deploySync   // cluster worker deployments; nil without a cluster section
	purges    *purge.Bus    // the cluster's cache purges; nil without a cluster
	// purgeAckWait bounds waiting for the other nodes' confirmations of a purge; zero means
	// purge.DefaultAckWait (tests on a busy machine wait longer).
	purgeAckWait time.Duration
	ready        atomic.Bool
	stopping     atomic.Bool

	// timeline keeps the dashboard's charts; nil until serve starts it.
	timeline *observe.Timeline
}

var _ admin.Controller = (*serverProc)(nil)

func (s *serverProc) serve(cfg *config.Config) error {
	if err := checkAdminExposure(cfg); err != nil {
		return err
	}
	errLog, err := observe.NewErrorLog(observe.ErrorLogConfig{Level: cfg.Log.Level, Format: cfg.Log.Format, Output: cfg.Log.Output})
	if err != nil {
		return err
	}
	defer errLog.Close()
	s.errLog, s.log = errLog, errLog.Logger
	slog.SetDefault(s.log)

	upg, err := tableflip.New(tableflip.Options{PIDFile: s.pidFile, UpgradeTimeout: upgradeTimeout})
	switch {
	case errors.Is(err, tableflip.ErrNotSupported):
		s.log.Warn("zero-downtime upgrades are not supported on this platform")
		s.listen = net.Listen
		s.listenUDP = net.ListenPacket
	case err != nil:
		return fmt.Errorf("upgrader: %w", err)
	default:
		s.upg = upg
		s.listen = upg.Listen
		// HTTP/3's UDP sockets are inherited like the TCP ones.
		s.listenUDP = upg.ListenPacket
		defer upg.Stop()
		// Started by an upgrade: forward the old process's QUIC datagrams to it. This fixes
		// the connection ID tag (h3.Process) before any HTTP/3 socket exists.
		if f, err := upg.Fds.File(h3HandoverFile); err != nil {
			s.log.Warn("upgrade: no HTTP/3 hand-over channel; the old process's QUIC connections lose packets", "err", err)
		} else if f != nil {
			if err := h3.Process().Inherit(f); err != nil {
				s.log.Warn("upgrade: no HTTP/3 hand-over channel; the old process's QUIC connections lose packets", "err", err)
			}
		}
	}

	if s.pidFile != "" {
		lock, err := lockPIDFile(s.pidFile, s.upg)
		if err != nil {
			return err
		}
		defer lock.Close()
	}

	s.metrics = observe.NewMetrics()
	s.transport = &upstream.Transport{
		MaxIdlePerPeer: cfg.UpstreamPool.MaxIdlePerServer,
		MaxIdleTotal:   cfg.UpstreamPool.MaxIdle,
	}
	defer s.transport.Close()
	s.metrics.SetPoolStats(poolStats{s.transport})
	defer s.startTimeline()()
	s.store = lb.NewStateStore()
	s.limits = router.NewRateLimits()
	s.overload = overload.New(overload.Thresholds{}, 0, s.log) // Apply sets the thresholds
	s.overload.Start()
	defer s.overload.Close()
	s.metrics.SetOverload(s.overload)
	s.metrics.SetRateLimitStats(observe.RateLimitStatsFunc(func(fn func(observe.RateLimitSample)) {
		for _, st := range s.limits.Stats() {
			fn(observe.RateLimitSample{Rule: st.Rule, Mode: st.Mode, Limited: st.Limited, Keys: st.Keys})
		}
	}))
	if s.cache, err = newCache(cfg, s.metrics); err != nil {
		return err
	}
	defer s.cache.Close()
	if s.cluster, err = s.startCluster(cfg); err != nil {
		return err
	}
	if s.cluster != nil {
		defer s.cluster.Close()
		if s.purges, err = s.startPurges(purgeStateFile(cfg)); err != nil {
			return err
		}
		defer s.purges.Close()
		s.waitPurgeCatchUp()
		if err := s.limits.Share(cluster.RateLimitBus{Node: s.cluster}, s.cluster.Name(), 0, s.log); err != nil {
			return fmt.Errorf("cluster: rate limits: %w", err)
		}
		defer s.limits.Close()
	}
	if s.workers, err = newWorkerStack(cfg.WorkerData, int64(cfg.WorkerMemoryLimit), s.self.get, s.log, s.cluster, &cfg.Cluster, s.cache, &cfg.ContainerRuntime); err != nil {
		return err
	}
	defer s.workers.close()
	if dc := s.workers.dc; dc != nil {
		if err := s.metrics.Register(dc.Collector()); err != nil {
			return fmt.Errorf("durable object metrics: %w", err)
		}
	}
	s.metrics.SetWorkerStats(workerMetrics{s.workers.reg})
	if err := s.metrics.Register(observe.CronCollector(s.workers.cronSamples)); err != nil {
		return fmt.Errorf("cron metrics: %w", err)
	}
	s.metrics.SetBucketStats(s.workers.bucketMetrics)
	s.metrics.SetQueueStats(queueMetrics{s.workers.reg})
	acm, stopACME := newACME(cfg, s.log, s.cluster)
	defer stopACME()
	var modules router.WorkerModules // nil: the configured modules
	if s.cluster != nil {
		s.deploys = newDeploySync(s.cluster, s.log, s.syncWorker, s.runningVersion)
		defer s.deploys.close() // before the workers close
		modules = s.deploys
	}
	s.rt = router.NewRuntime(router.Options{
		Deps: router.Deps{
			Transport:     s.transport,
			Store:         s.store,
			RateLimits:    s.limits,
			Overload:      s.overload,
			Cache:         s.cache,
			Workers:       s.workers.reg,
			WorkerModules: modules,
			Metrics:       s.metrics,
			Logger:        s.log,
			ACME:          acm,
		},
		Listen:        s.listen,
		ListenPacket:  s.listenUDP,
		ConnHook:      s.metrics.ConnHook,
		HandshakeHook: s.metrics.QUICHandshake,
		ShedHook:      s.metrics.Shed,
		// Serve while the workers compile, unless a process being upgraded serves them
		// meanwhile (it stops once this one is ready, after the compiles).
		StartBeforeWorkers: s.upg == nil || !s.upg.HasParent(),
	})
	if err := s.rt.Apply(cfg); err != nil {
		s.rt.Close()
		return err
	}
	if err := s.workers.cron.Set(cronTriggers(cfg)); err != nil {
		s.rt.Close()
		return err // validation parsed every expression: not reached
	}
	s.workers.cron.Start()
	if s.deploys != nil {
		s.deploys.commit(true)
		if err := s.deploys.start(); err != nil {
			s.rt.Close()
			return err
		}
	}
	if err := s.startAdmin(cfg); err != nil {
		s.rt.Close()
		return err
	}
	defer s.stopAdmin()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGINT)
	defer signal.Stop(sigs)

	var exit <-chan struct{}
	reloads := 0              // SIGHUP reloads so far, numbered in the reload status file
	var handover *h3.Handover // set once an upgrade started a new process
	defer func() {
		if handover != nil {
			handover.Close()
		}
	}()
	if s.upg != nil {
		if err := s.upg.Ready(); err != nil {
			s.rt.Close()
			return fmt.Errorf("upgrader: %w", err)
		}
		exit = s.upg.Exit()
	} else if s.pidFile != "" {
		if err := writePIDFile(s.pidFile); err != nil {
			s.log.Warn("cannot write pid file", "path", s.pidFile, "err", err)
		}
	}
	s.ready.Store(true)
	s.logListening(cfg)

	for {
		select {
		case <-exit:
			// A new process is serving on the inherited sockets: drain and leave.
			s.log.Info("upgrade: new process is ready; draining")
			if s.cluster != nil {
				// The new process starts its embedded server on the same ports once they
				// are free; this one's client moves to the other servers meanwhile.
				s.cluster.StopServer()
			}
			if handover == nil {
				return s.drain()
			}
			// The new process reads the UDP sockets now and forwards this one's QUIC
			// datagrams.
			handover.Start()
			// Connection attempts this process began before the new one took the socket
			// finish here, rather than being refused when drain stops accepting.
			hctx, hcancel := context.WithTimeout(context.Background(), h3.DefaultHandshakeTimeout)
			if err := s.rt.AwaitH3Handshakes(hctx); err != nil {
				s.log.Warn("upgrade: QUIC handshakes still in flight are refused", "err", err)
			}
			hcancel()
			s.log.Info("upgrade: HTTP/3 hand-over started")
			err := s.drain()
			n, dropped := handover.Received()
			s.log.Info("upgrade: HTTP/3 hand-over done", "datagrams", n, "dropped", dropped)
			return err
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				err := s.Reload(context.Background())
				if err != nil {
					s.log.Error("reload refused; the previous configuration keeps serving", "err", err)
				}
				if s.pidFile != "" {
					// `verge reload` waits for this to report the result.
					reloads++
					if werr := writeReloadStatus(s.pidFile, reloads, err); werr != nil {
						s.log.Warn("cannot write the reload status", "path", reloadStatusPath(s.pidFile), "err", werr)
					}
				}
			case syscall.SIGUSR2:
				if ho := s.upgrade(); ho != nil {
					if handover != nil {
						handover.Close()
					}
					handover = ho
				}
			case syscall.SIGTERM, syscall.SIGQUIT:
				s.log.Info("graceful shutdown", "signal", sig.String())
				return s.drain()
			case syscall.SIGINT:
				s.log.Info("fast shutdown", "signal", sig.String())
				s.ready.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), fastStopTimeout)
				defer cancel()
				s.rt.Close()
				s.stopAdminCtx(ctx)
				return nil
			}
		}
	}
}

func (s *serverProc) logListening(cfg *config.Config) {
	for _, l := range cfg.Listeners {
		scheme := "http"
		if l.TLS != nil {
			scheme = "https"
		}
		addr := l.Address
		if a := s.rt.Addr(l.Name); a != nil {
			addr = a.String()
		}
		protos := l.Protocols
		if l.HTTP3.Enabled {
			protos = append(slices.Clip(protos), "h3")
		}
		s.log.Info("listening", "listener", l.Name, "url", scheme+"://"+addr, "protocols", protos)
	}
	if !cfg.Admin.Disabled {
		s.log.Info("admin api", "url", "http://"+cfg.Admin.Address)
	}
}

// upgrade starts the new binary with the listening sockets and the HTTP/3 hand-over channel;
// this process drains once the new one reports ready (the exit channel in the signal loop).
// It returns the hand-over channel when the new process started with one.
func (s *serverProc) upgrade() *h3.Handover {
	if s.upg == nil {
		s.log.Error("upgrade refused: not supported on this platform")
		return nil
	}
	s.log.Info("upgrade: starting the new binary")
	gen := h3.Process()
	ho, err := gen.PrepareHandover()
	if err == nil {
		err = s.upg.Fds.AddFile(h3HandoverFile, ho.File())
		if err == nil {
			err = os.Setenv(h3.EnvHandoverTag, gen.Tag().String())
		}
		if err != nil {
			ho.Close()
			ho = nil
		}
	}
	if err != nil {
		s.log.Warn("upgrade: no HTTP/3 hand-over channel; QUIC connections of this process will lose packets while they drain", "err", err)
	}
	if err := s.upg.Upgrade(); err != nil {
		s.log.Error("upgrade failed; this process keeps serving", "err", err)
		if ho != nil {
			ho.Close()
		}
		return nil
	}
	return ho
}

// drain stops accepting and lets requests in flight finish within the grace period.
func (s *serverProc) drain() error {
	s.stopping.Store(true)
	s.ready.Store(false)
	grace := config.DefaultGracePeriod
	if in := s.rt.Current(); in != nil {
		grace = in.Config.Shutdown.GracePeriod.Std()
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// A process that drains fires no more slots (after an upgrade the new one does); the
	// scheduled handlers running finish within the grace period.
	s.workers.cron.Close(ctx)
	s.stopAdminCtx(ctx)
	err := s.rt.Shutdown(ctx)
	if err != nil {
		s.log.Warn("drain ended with connections cut", "err", err)
	} else {
		s.log.Info("drained; exiting")
	}
	if s.pidFile != "" {
		removeOwnPIDFile(s.pidFile)
	}
	return nil
}

// Reload reads the config file again and applies it.
func (s *serverProc) Reload(ctx context.Context) error {
	if s.file == "" {
		return errors.New("no config file to reload (verge proxy)")
	}
	data, err := os.ReadFile(s.file)
	if err != nil {
		s.metrics.Reloaded(false)
		return fmt.Errorf("read config: %w", err)
	}
	return s.apply(s.file, data)
}

// LoadConfig validates and applies a config sent through the admin API.
func (s *serverProc) LoadConfig(ctx context.Context, yaml []byte) error {
	name := s.file
	if name == "" {
		name = "admin"
	}
	return s.apply(name, yaml)
}

func (s *serverProc) apply(name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return errors.New("shutting down")
	}
	cfg, err := config.Parse(name, data)
	if err != nil {
		s.metrics.Reloaded(false)
		return err
	}
	if err := checkAdminExposure(cfg); err != nil {
		s.metrics.Reloaded(false)
		return err
	}
	err = s.rt.Apply(cfg)
	if s.deploys != nil {
		s.deploys.commit(err == nil)
	}
	if err != nil {
		s.metrics.Reloaded(false)
		return err
	}
	if err := s.workers.cron.Set(cronTriggers(cfg)); err != nil {
		s.log.Error("cron triggers not updated", "err", err)
	}
	if err := s.restartAdminLocked(cfg); err != nil {
		s.log.Error("admin api not restarted", "err", err)
	}
	if lvl, err := observe.ParseLevel(cfg.Log.Level); err == nil {
		s.errLog.SetLevel(lvl)
	}
	s.metrics.Reloaded(true)
	s.log.Info("configuration reloaded", "file", name, "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	return nil
}
