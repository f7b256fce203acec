package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/upstream"
)

// probe runs one health check of b; nil means it passed.
func (hc *healthChecker) probe(ctx context.Context, b *Backend) error {
	addr := b.Address
	if hc.cfg.Port != 0 {
		host, _, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort(host, strconv.Itoa(hc.cfg.Port))
	}
	switch hc.cfg.Type {
	case CheckHTTP:
		return hc.probeHTTP(ctx, b.Peer, addr)
	case CheckTLS:
		return probeTLS(ctx, b.Peer, addr)
	default:
		return probeTCP(ctx, addr)
	}
}

func probeTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp check: %w", err)
	}
	return c.Close()
}

func probeTLS(ctx context.Context, p *upstream.Peer, addr string) error {
	raw, err := probeDial(p)(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tls check: %w", err)
	}
	c := tls.Client(raw, tlsConfig(p, addr))
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return fmt.Errorf("tls check: %w", err)
	}
	return c.Close()
}

// tlsConfig builds the client TLS configuration for p; a peer without TLS options gets
// verification against the system roots with the address's host as server name.
func tlsConfig(p *upstream.Peer, addr string) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	o := p.TLS
	if o == nil {
		return cfg
	}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	cfg.InsecureSkipVerify = o.InsecureSkipVerify
	cfg.RootCAs = o.RootCAs
	if o.ClientCert != nil {
		cfg.Certificates = []tls.Certificate{*o.ClientCert}
	}
	if o.MinVersion != 0 {
		cfg.MinVersion = o.MinVersion
	}
	switch p.Protocol {
	case upstream.HTTP2:
		cfg.NextProtos = []string{"h2"}
	case upstream.HTTP2OrHTTP1:
		cfg.NextProtos = []string{"h2", "http/1.1"}
	default:
		cfg.NextProtos = []string{"http/1.1"}
	}
	return cfg
}

// errStatus is returned when a health check response has an unexpected status.
var errStatus = errors.New("unexpected status")

func (hc *healthChecker) probeHTTP(ctx context.Context, p *upstream.Peer, addr string) error {
	tr := &http.Transport{
		DialContext:            probeDial(p),
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		Protocols:              new(http.Protocols),
	}
	defer tr.CloseIdleConnections()
	switch {
	case p.Protocol == upstream.HTTP2 && p.TLS != nil:
		tr.Protocols.SetHTTP2(true)
	case p.Protocol == upstream.HTTP2:
		tr.Protocols.SetUnencryptedHTTP2(true)
	case p.Protocol == upstream.HTTP2OrHTTP1 && p.TLS != nil:
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetHTTP2(true)
	default:
		tr.Protocols.SetHTTP1(true)
	}
	if p.TLS != nil {
		tr.TLSClientConfig = tlsConfig(p, addr)
		tr.TLSClientConfig.NextProtos = nil // the transport sets ALPN from Protocols
	}
	url := "http://" + addr + hc.cfg.Path
	if p.TLS != nil {
		url = "https://" + addr + hc.cfg.Path
	}
	req, err := http.NewRequestWithContext(ctx, hc.cfg.Method, url, nil)
	if err != nil {
		return fmt.Errorf("http check: %w", err)
	}
	switch {
	case hc.cfg.Host != "":
		req.Host = hc.cfg.Host
	case p.Host != "":
		req.Host = p.Host
	}
	req.Header.Set("User-Agent", "verge-health-check")
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http check: %w", err)
	}
	defer resp.Body.Close()
	if !hc.status.contains(resp.StatusCode) {
		return fmt.Errorf("http check: %w %d", errStatus, resp.StatusCode)
	}
	if hc.cfg.ExpectBody == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	if err != nil {
		return fmt.Errorf("http check: reading body: %w", err)
	}
	if !bytes.Contains(body, []byte(hc.cfg.ExpectBody)) {
		return fmt.Errorf("http check: body does not contain %q", hc.cfg.ExpectBody)
	}
	return nil
}

// statusSet is a list of inclusive status ranges.
type statusSet [][2]int

// parseStatusSet parses "200,204", "200-299" and "2xx" items separated by commas.
func parseStatusSet(s string) (statusSet, error) {
	var set statusSet
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, err := parseStatusItem(item)
		if err != nil {
			return nil, fmt.Errorf("expected status %q: %w", item, err)
		}
		set = append(set, [2]int{lo, hi})
	}
	return set, nil
}

func parseStatusItem(item string) (lo, hi int, err error) {
	if len(item) == 3 && (item[1] == 'x' || item[1] == 'X') && (item[2] == 'x' || item[2] == 'X') {
		if item[0] < '1' || item[0] > '5' {
			return 0, 0, errors.New("status class must be 1xx to 5xx")
		}
		c := int(item[0]-'0') * 100
		return c, c + 99, nil
	}
	a, b, isRange := strings.Cut(item, "-")
	lo, err = parseStatus(a)
	if err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parseStatus(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, errors.New("empty range")
		}
	}
	return lo, hi, nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 100 || n > 599 {
		return 0, errors.New("status must be a number from 100 to 599")
	}
	return n, nil
}

func (s statusSet) contains(code int) bool {
	for _, r := range s {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}
