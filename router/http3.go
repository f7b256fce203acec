package router

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/h3"
)

// defaultAltSvcMaxAge is the ma= of the Alt-Svc field when the config leaves it at zero.
const defaultAltSvcMaxAge = 24 * time.Hour

// altSvc returns the Alt-Svc field value advertising HTTP/3 on addr's port (RFC 7838), built
// once per listener so responses carry it without allocating.
func altSvc(addr net.Addr, maxAge time.Duration) string {
	if maxAge <= 0 {
		maxAge = defaultAltSvcMaxAge
	}
	port := 0
	if a, ok := addr.(*net.TCPAddr); ok {
		port = a.Port
	} else if _, p, err := net.SplitHostPort(addr.String()); err == nil {
		port, _ = strconv.Atoi(p)
	}
	return `h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.FormatInt(int64(maxAge/time.Second), 10)
}

// startH3 builds the listener's HTTP/3 server and serves it on the listener's UDP socket. The
// TLS configuration follows reloads through the listener's current one.
func (rt *Runtime) startH3(ls *lstate, l *config.Listener, inst *Instance) {
	sock := rt.udp[l.Address]
	h := &l.HTTP3
	srv := &h3.Server{
		Handler: inst.Handler(l.Name).ServeExchange,
		TLSConfig: &tls.Config{
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return ls.tlsCur.Load(), nil
			},
		},
		IdleTimeout:      h.IdleTimeout.Std(),
		HandshakeTimeout: h.HandshakeTimeout.Std(),
		MaxStreams:       h.MaxStreams,
		MaxStreamWindow:  uint64(max(h.StreamWindow, 0)),
		MaxConnWindow:    uint64(max(h.ConnWindow, 0)),
		MaxHeaderBytes:   int(l.Limits.MaxHeaderBytes),
		MaxBodySize:      int64(l.Limits.MaxBody),
		SendTimeout:      l.Timeouts.Write.Std(),
		BodyReadTimeout:  l.Timeouts.BodyRead.Std(),
		MaxHandshakes:    h.MaxHandshakes,
		RetryThreshold:   h.RetryThreshold,
		Allow0RTT:        h.ZeroRTT,
		QlogDir:          h.QlogDir,
		ConnHook:         rt.opts.ConnHook,
		HandshakeHook:    rt.opts.HandshakeHook,
		Logger:           rt.log,
	}
	ls.h3 = srv
	rt.bg.Add(1)
	go func() {
		defer rt.bg.Done()
		if err := srv.Serve(sock); err != nil && !errors.Is(err, h3.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			rt.log.Error("http3 listener stopped", "listener", ls.name, "err", err)
		}
	}()
}

// closeUnusedUDP closes the HTTP/3 sockets no listener of next serves on, once the retired
// listeners' QUIC connections have drained (or grace passed). Called with rt.mu held.
func (rt *Runtime) closeUnusedUDP(next map[string]*lstate, retired []*lstate, grace time.Duration) {
	inUse := map[string]bool{}
	for _, ls := range next {
		if ls.h3 != nil {
			inUse[ls.key.address] = true
		}
	}
	for addr, s := range rt.udp {
		if inUse[addr] {
			continue
		}
		delete(rt.udp, addr)
		var draining []*h3.Server
		for _, ls := range retired {
			if ls.h3 != nil && ls.key.address == addr {
				draining = append(draining, ls.h3)
			}
		}
		rt.bg.Add(1)
		go func() {
			defer rt.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			for _, srv := range draining {
				srv.Shutdown(ctx)
			}
			s.Close()
		}()
	}
}

// closeAllUDP closes every HTTP/3 socket. Called with rt.mu held, after the listeners stopped.
func (rt *Runtime) closeAllUDP() {
	for addr, s := range rt.udp {
		s.Close()
		delete(rt.udp, addr)
	}
}
