package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/upstream"
)

// adminStopTimeout bounds the shutdown of a replaced admin server.
const adminStopTimeout = 5 * time.Second

// CurrentConfig returns the YAML in effect.
func (s *serverProc) CurrentConfig() []byte {
	if in := s.rt.Current(); in != nil {
		return in.Config.Source
	}
	return nil
}

// Upstreams lists every backend of every group of the current generation.
func (s *serverProc) Upstreams() []admin.UpstreamStatus {
	in := s.rt.Current()
	if in == nil {
		return nil
	}
	var out []admin.UpstreamStatus
	for _, name := range in.Groups() {
		for _, b := range in.Balancer(name).Backends() {
			st := b.Status()
			out = append(out, admin.UpstreamStatus{
				Group: name, Address: st.Address, Weight: st.Weight, Healthy: st.Healthy,
				Ejected: st.Ejected, Draining: st.Draining, InFlight: st.InFlight, Fails: st.Fails,
			})
		}
	}
	return out
}

// SetDrain drains or undrains a backend. The flag lives in the shared state store, so it
// survives reloads.
func (s *serverProc) SetDrain(group, address string, drain bool) error {
	in := s.rt.Current()
	if in == nil {
		return fmt.Errorf("upstream group %q: %w", group, admin.ErrNotFound)
	}
	bal := in.Balancer(group)
	if bal == nil {
		return fmt.Errorf("upstream group %q: %w", group, admin.ErrNotFound)
	}
	b := bal.Backend(address)
	if b == nil {
		return fmt.Errorf("backend %q in group %q: %w", address, group, admin.ErrNotFound)
	}
	if drain {
		b.Drain()
	} else {
		b.Undrain()
	}
	return nil
}

// Ready reports whether this process serves traffic.
func (s *serverProc) Ready() bool { return s.ready.Load() && !s.stopping.Load() }

func adminKey(cfg *config.Config) (string, error) {
	a := cfg.Admin
	if a.Disabled {
		return "", nil
	}
	tok := a.Token
	if a.TokenFile != "" {
		t, err := config.ReadToken(a.TokenFile)
		if err != nil {
			return "", err
		}
		tok = t
	}
	return fmt.Sprintf("%s\x00%s\x00%v\x00%q\x00%v", a.Address, tok, *cfg.Metrics.Enabled, a.AllowedHosts, dashboardOn(cfg)), nil
}

// checkAdminExposure refuses a config whose admin API would serve without a token off
// loopback, or with a short token (config validation refuses these too, with the position).
func checkAdminExposure(cfg *config.Config) error {
	if cfg.Admin.Disabled {
		return nil
	}
	tok := cfg.Admin.Token
	if cfg.Admin.TokenFile != "" {
		t, err := config.ReadToken(cfg.Admin.TokenFile)
		if err != nil {
			return fmt.Errorf("admin.token_file: %w", err)
		}
		tok = t
	}
	return admin.CheckExposure(cfg.Admin.Address, tok)
}

func (s *serverProc) startAdmin(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restartAdminLocked(cfg)
}

// restartAdminLocked (re)starts the admin server when its address, token or metrics setting
// changed. The socket comes from the upgrader, so a binary upgrade hands it over too, and it
// stays open while only the token or metrics setting changes.
func (s *serverProc) restartAdminLocked(cfg *config.Config) error {
	// Called after every Apply as well: the workers' view of Verge's own listeners follows.
	defer s.refreshSelf(cfg)
	key, err := adminKey(cfg)
	if err != nil {
		return err
	}
	if key == s.admKey && (s.adm != nil || key == "") {
		return nil
	}
	var tok string
	if key != "" {
		tok = cfg.Admin.Token
		if cfg.Admin.TokenFile != "" {
			tok, _ = config.ReadToken(cfg.Admin.TokenFile)
		}
		// The server is served in the background: refuse here what it would refuse there,
		// so that a start or reload fails instead of leaving a dead admin port.
		if err := admin.CheckExposure(cfg.Admin.Address, tok); err != nil {
			return err
		}
	}
	var sock *router.Handoff
	if key != "" {
		if s.admSock != nil && s.admAddr == cfg.Admin.Address {
			sock = s.admSock
		} else {
			ln, err := s.listen("tcp", cfg.Admin.Address)
			if err != nil {
				return fmt.Errorf("admin api: %w", err)
			}
			sock = router.NewHandoff(ln, s.log)
		}
	}
	s.stopAdminLocked(context.Background(), sock != s.admSock)
	s.admKey = key
	if key == "" {
		return nil
	}
	srv := &admin.Server{Addr: cfg.Admin.Address, Token: tok, AllowedHosts: cfg.Admin.AllowedHosts, Controller: s, Logger: s.log,
		Dashboard: dashboardOn(cfg)}
	if s.timeline != nil {
		srv.Timeline = timeline{s.timeline}
	}
	if *cfg.Metrics.Enabled {
		srv.Metrics = s.metrics.Handler()
	}
	s.adm, s.admSock, s.admAddr = srv, sock, cfg.Admin.Address
	s.admPublic.Store(&s.admAddr)
	go s.serveAdmin(srv, sock.Attach())
	return nil
}

// stopAdminLocked shuts the admin server down and, with closeSock, its socket.
func (s *serverProc) stopAdminLocked(ctx context.Context, closeSock bool) {
	if s.adm != nil {
		ctx, cancel := context.WithTimeout(ctx, adminStopTimeout)
		s.adm.Shutdown(ctx)
		cancel()
		s.adm = nil
	}
	if closeSock && s.admSock != nil {
		s.admSock.Close()
		s.admSock, s.admAddr = nil, ""
		s.admPublic.Store(nil)
	}
}

// serveAdmin runs the admin server until it is shut down.
func (s *serverProc) serveAdmin(srv *admin.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil {
		s.log.Error("admin api stopped", "err", err)
	}
}

func (s *serverProc) stopAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), adminStopTimeout)
	defer cancel()
	s.stopAdminCtx(ctx)
}

func (s *serverProc) stopAdminCtx(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopAdminLocked(ctx, true)
	s.admKey = ""
}

// poolStats feeds the upstream pool counters to the metrics, one sample per pool key.
type poolStats struct{ t *upstream.Transport }

func (p poolStats) EachPool(fn func(observe.PoolSample)) {
	for k, st := range p.t.Pool().KeyStats() {
		fn(observe.PoolSample{
			Address: k.Address, Dialed: st.Dials, DialErrors: st.DialErrors, Requests: st.Requests,
			Reused: st.ReusedRequests, Idle: st.IdleConns, Active: st.ActiveConns,
		})
	}
}
