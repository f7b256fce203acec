package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/internal/localca"
)

// cmdProxy runs a reverse proxy from flags alone, like `caddy reverse-proxy`.
func cmdProxy(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proxy", "proxy --listen ADDR --upstream URL[,URL...] [--tls-cert F --tls-key F | --tls-internal]", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to listen on")
	upstreams := fs.String("upstream", "", "comma-separated origin `URLs`, http:// or https:// (required)")
	certFile := fs.String("tls-cert", "", "serve TLS with this PEM certificate `file` (with --tls-key)")
	keyFile := fs.String("tls-key", "", "PEM private key `file` for --tls-cert")
	internal := fs.Bool("tls-internal", false, "serve TLS with a certificate for localhost from a local CA kept in the data directory (made once, reused)")
	dataDir := fs.String("data", "", "data `directory`: --tls-internal keeps its CA in DIR/tls-internal (default $STATE_DIRECTORY, else the user cache directory)")
	http3 := fs.Bool("http3", false, "also serve HTTP/3 on the UDP port of --listen and advertise it with Alt-Svc (needs TLS)")
	insecure := fs.Bool("insecure-upstream", false, "do not verify https upstream certificates")
	policy := fs.String("policy", "round_robin", "load-balancing `policy`: round_robin, weighted, random, p2c, least_conn, consistent_hash")
	accessLog := fs.String("access-log", "stdout", "access log `output`: stdout, stderr, off or a file path")
	logLevel := fs.String("log-level", "info", "error log `level`: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *upstreams == "" {
		fmt.Fprintln(stderr, "verge proxy: --upstream is required")
		fs.Usage()
		return errUsage
	}
	if (*certFile == "") != (*keyFile == "") || *certFile != "" && *internal {
		fmt.Fprintln(stderr, "verge proxy: use --tls-cert with --tls-key, or --tls-internal")
		return errUsage
	}
	if *http3 && *certFile == "" && !*internal {
		fmt.Fprintln(stderr, "verge proxy: --http3 needs TLS: --tls-cert with --tls-key, or --tls-internal")
		return errUsage
	}
	if *internal {
		dir, err := internalCertDir(*dataDir)
		if err != nil {
			return err
		}
		ca, err := localca.Open(dir)
		if err != nil {
			return err
		}
		_, reused, err := ca.Leaf([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
		if err != nil {
			return err
		}
		*certFile, *keyFile = filepath.Join(dir, localca.LeafFile), filepath.Join(dir, localca.LeafKeyFile)
		what := map[bool]string{true: "reusing the stored", false: "issued a new"}[reused]
		if ca.Created {
			fmt.Fprintf(stdout, "verge proxy: made a local CA in %s\n", dir)
		}
		fmt.Fprintf(stdout, "verge proxy: %s certificate for localhost, 127.0.0.1 and ::1 from the local CA (%s)\n%s",
			what, *certFile, ca.TrustHelp())
	}
	y, err := proxyConfig(proxyFlags{
		listen: *listen, upstreams: *upstreams, cert: *certFile, key: *keyFile,
		insecure: *insecure, policy: *policy, accessLog: *accessLog, logLevel: *logLevel,
		http3: *http3,
	})
	if err != nil {
		fmt.Fprintln(stderr, "verge proxy:", err)
		return errUsage
	}
	cfg, err := config.Parse("verge-proxy", []byte(y))
	if err != nil {
		fmt.Fprintln(stderr, "verge proxy: invalid settings:", err)
		return exitError(1)
	}
	s := &serverProc{}
	return s.serve(cfg)
}

type proxyFlags struct {
	listen, upstreams, cert, key, policy, accessLog, logLevel string
	insecure, http3                                           bool
}

// proxyConfig builds the YAML config equivalent to the proxy command's flags, so that it is
// validated and served exactly like a config file.
func proxyConfig(f proxyFlags) (string, error) {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "listeners:\n  - name: proxy\n    address: %s\n", q(f.listen))
	if f.cert != "" {
		fmt.Fprintf(&b, "    tls:\n      certificates:\n        - cert: %s\n          key: %s\n", q(f.cert), q(f.key))
	}
	if f.http3 {
		b.WriteString("    http3:\n      enabled: true\n")
	}
	b.WriteString("routes:\n  - name: proxy\n    upstream: origin\n")
	fmt.Fprintf(&b, "upstreams:\n  - name: origin\n    policy: %s\n    servers:\n", q(f.policy))
	scheme := ""
	for _, raw := range strings.Split(f.upstreams, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return "", fmt.Errorf("--upstream %q: want http://host:port or https://host:port", raw)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return "", fmt.Errorf("--upstream %q: paths are not supported; give scheme://host:port", raw)
		}
		if scheme != "" && u.Scheme != scheme {
			return "", fmt.Errorf("--upstream: mixing http and https origins is not supported")
		}
		scheme = u.Scheme
		host := u.Host
		if u.Port() == "" {
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		fmt.Fprintf(&b, "      - address: %s\n", q(host))
	}
	if scheme == "" {
		return "", fmt.Errorf("--upstream: no origin given")
	}
	if scheme == "https" {
		fmt.Fprintf(&b, "    tls:\n      verify: %v\n", !f.insecure)
	}
	fmt.Fprintf(&b, "admin:\n  disabled: true\naccess_log:\n  output: %s\nlog:\n  level: %s\n", q(f.accessLog), q(f.logLevel))
	return b.String(), nil
}

// internalCertDir is where --tls-internal keeps its local CA and certificate: DIR/tls-internal
// of the data directory data; without one, $STATE_DIRECTORY (systemd's StateDirectory=, as
// worker_data defaults to), else the user cache directory ($XDG_CACHE_HOME/verge, usually
// ~/.cache/verge; on macOS ~/Library/Caches/verge), else the temp directory. verge proxy has
// no config file, so no worker_data to default to.
func internalCertDir(data string) (string, error) {
	if data == "" {
		if sd, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); filepath.IsAbs(sd) {
			data = sd
		} else if base, err := os.UserCacheDir(); err == nil {
			data = filepath.Join(base, "verge")
		} else {
			data = filepath.Join(os.TempDir(), "verge")
		}
	}
	dir := filepath.Join(data, "tls-internal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("tls-internal: %w", err)
	}
	return dir, nil
}
