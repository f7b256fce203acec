// Command tlsload measures TLS handshakes: each of -c workers loops dialing a new TLS
// connection, sending one HTTP/1.1 request with Connection: close, reading the response and
// closing, for -d. No session cache, so every handshake is a full one.
//
// The client offers TLS 1.3 with X25519 only and ALPN http/1.1, so that a Go server (which
// would otherwise pick the hybrid post-quantum X25519MLKEM768 key exchange) and OpenSSL-based
// servers do the same work. Certificates are not verified: the benchmark client's CPU is not
// what is measured, and the proxy's signing work is the same either way.
//
// Output, one line: conns=... errors=... rate=.../s p50=...ms p99=...ms
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18443", "server address")
	path := flag.String("path", "/1k", "request path")
	workers := flag.Int("c", 16, "concurrent connections")
	dur := flag.Duration("d", 8*time.Second, "duration")
	flag.Parse()
	cfg := &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		NextProtos:         []string{"http/1.1"},
		ServerName:         "localhost",
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	var ok, errs atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var own []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := once(*addr, cfg, req); err != nil {
					if errs.Add(1) == 1 {
						log.Printf("tlsload: %v", err)
					}
					continue
				}
				own = append(own, time.Since(t0))
				ok.Add(1)
			}
			mu.Lock()
			lat = append(lat, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))]) / 1e6
	}
	fmt.Printf("conns=%d errors=%d rate=%.0f/s p50=%.3fms p99=%.3fms\n",
		ok.Load(), errs.Load(), float64(ok.Load())/el.Seconds(), pct(0.5), pct(0.99))
}

func once(addr string, cfg *tls.Config, req []byte) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
