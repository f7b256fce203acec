package lb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Target is one discovered backend.
type Target struct {
	// Address is host:port.
	Address string
	// Weight is the relative weight; zero or negative means 1.
	Weight int
}

// Discoverer returns the current backend set. The Balancer calls Discover every
// Options.DiscoveryInterval with a deadline of Options.DiscoveryTimeout. An error, or an
// empty set, keeps the previous set.
type Discoverer interface {
	Discover(ctx context.Context) ([]Target, error)
}

// Static is a fixed backend set.
type Static []Target

var _ Discoverer = Static(nil)

// Discover returns the targets.
func (s Static) Discover(context.Context) ([]Target, error) { return slices.Clone(s), nil }

// Resolver is the part of *net.Resolver that DNS uses; tests inject a fake.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

var _ Resolver = (*net.Resolver)(nil)

// IPFamily restricts the addresses DNS discovery uses.
type IPFamily uint8

const (
	// AnyFamily uses IPv4 and IPv6 addresses (the default).
	AnyFamily IPFamily = iota
	// IPv4Only uses A records only.
	IPv4Only
	// IPv6Only uses AAAA records only.
	IPv6Only
)

// DNS discovers backends by DNS: by default each A/AAAA address of Name becomes a backend on
// Port with weight 1; with SRV set, the SRV records of _Service._Proto.Name (or of Name
// itself when Service is empty) give targets, ports and weights. Only the records of the
// lowest priority are used (RFC 2782 section "The format of the SRV RR"); a weight of 0
// counts as 1. SRV targets are kept as host names, which the dialer resolves.
//
// net.Resolver does not expose record TTLs, so the Balancer's DiscoveryInterval sets the
// refresh rate.
type DNS struct {
	// Name is the host name to resolve. Required.
	Name string
	// Port is the backend port for A/AAAA discovery. Required unless SRV is set.
	Port int
	// Family restricts A/AAAA discovery to one address family. Zero means both.
	Family IPFamily
	// SRV switches to SRV discovery.
	SRV bool
	// Service and Proto name the SRV service, e.g. "http" and "tcp". Empty Service looks up
	// Name directly; empty Proto means "tcp".
	Service string
	Proto   string
	// Resolver resolves names. Nil means net.DefaultResolver.
	Resolver Resolver
}

var _ Discoverer = (*DNS)(nil)

// Discover resolves d.Name and returns the targets, sorted by address.
func (d *DNS) Discover(ctx context.Context) ([]Target, error) {
	if d.Name == "" {
		return nil, errors.New("lb: dns discovery: empty name")
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	var ts []Target
	if d.SRV {
		proto := d.Proto
		if proto == "" && d.Service != "" {
			proto = "tcp"
		}
		_, srvs, err := r.LookupSRV(ctx, d.Service, proto, d.Name)
		if err != nil {
			return nil, fmt.Errorf("lb: dns discovery: srv %s: %w", d.Name, err)
		}
		ts = srvTargets(srvs)
	} else {
		if d.Port <= 0 || d.Port > 65535 {
			return nil, fmt.Errorf("lb: dns discovery: %s: invalid port %d", d.Name, d.Port)
		}
		ips, err := r.LookupIPAddr(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("lb: dns discovery: %s: %w", d.Name, err)
		}
		port := strconv.Itoa(d.Port)
		seen := make(map[string]bool, len(ips))
		for _, ip := range ips {
			v4 := ip.IP.To4() != nil
			if (d.Family == IPv4Only && !v4) || (d.Family == IPv6Only && v4) {
				continue
			}
			host := ip.IP.String()
			if ip.Zone != "" {
				host += "%" + ip.Zone
			}
			addr := net.JoinHostPort(host, port)
			if !seen[addr] {
				seen[addr] = true
				ts = append(ts, Target{Address: addr, Weight: 1})
			}
		}
	}
	slices.SortFunc(ts, func(a, b Target) int { return strings.Compare(a.Address, b.Address) })
	return ts, nil
}

// srvTargets keeps the lowest-priority records, merging duplicates by adding weights.
func srvTargets(srvs []*net.SRV) []Target {
	if len(srvs) == 0 {
		return nil
	}
	best := srvs[0].Priority
	for _, s := range srvs {
		best = min(best, s.Priority)
	}
	idx := map[string]int{}
	var ts []Target
	for _, s := range srvs {
		if s.Priority != best || s.Target == "." || s.Target == "" {
			continue
		}
		w := max(int(s.Weight), 1)
		addr := net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))
		if i, ok := idx[addr]; ok {
			ts[i].Weight += w
			continue
		}
		idx[addr] = len(ts)
		ts = append(ts, Target{Address: addr, Weight: w})
	}
	return ts
}

// Refresh runs one discovery round now and applies its result. It returns the discovery
// error (the set is then unchanged) or nil when there is no Discoverer. Call it after New
// to start serving with the discovered set.
func (lb *Balancer) Refresh(ctx context.Context) error {
	if lb.disc == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, lb.discTO)
	defer cancel()
	ts, err := lb.disc.Discover(dctx)
	if err == nil && len(ts) == 0 {
		err = errors.New("lb: discovery returned no backends")
	}
	if err == nil {
		cfgs := make([]BackendConfig, 0, len(ts))
		seen := make(map[string]int, len(ts))
		for _, t := range ts {
			if i, ok := seen[t.Address]; ok {
				cfgs[i].Weight += max(t.Weight, 1)
				continue
			}
			seen[t.Address] = len(cfgs)
			cfgs = append(cfgs, BackendConfig{Address: t.Address, Weight: max(t.Weight, 1)})
		}
		err = lb.Update(cfgs)
	}
	if err != nil && ctx.Err() == nil { // a round cut short by Close is not a failure
		lb.log.Warn("lb: discovery failed, keeping the last good backend set", "err", err)
		lb.emit(Event{Kind: DiscoveryFailed, Err: err})
	}
	return err
}

// runDiscovery refreshes the backend set every discovery interval until ctx is done.
func (lb *Balancer) runDiscovery(ctx context.Context) {
	defer lb.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = lb.Refresh(ctx) // logged and reported by Refresh
		t.Reset(lb.discIvl)
	}
}
