// Command h3load drives one connection with -c concurrent streams for -d, each stream looping
// GET -path and reading the body, over HTTP/3 (QUIC, quic-go's client) or over HTTP/2 on TLS
// (net/http with one connection), so Verge's CPU per request can be compared across the two.
// Certificates are not verified: the client's CPU is not what is measured.
//
// Output, one line: proto=... requests=... errors=... rate=.../s
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18443", "server address (TCP for h2, UDP for h3)")
	path := flag.String("path", "/1k", "request path")
	proto := flag.String("proto", "h3", "h3 or h2")
	conc := flag.Int("c", 16, "concurrent streams on the one connection")
	dur := flag.Duration("d", 8*time.Second, "duration")
	flag.Parse()

	tc := &tls.Config{InsecureSkipVerify: true}
	var rt http.RoundTripper
	switch *proto {
	case "h3":
		t := &http3.Transport{TLSClientConfig: tc, QUICConfig: &quic.Config{MaxIdleTimeout: 30 * time.Second}}
		defer t.Close()
		rt = t
	case "h2":
		rt = &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxConnsPerHost: 1,
			MaxIdleConnsPerHost: *conc, DisableCompression: true}
	default:
		log.Fatalf("unknown -proto %q", *proto)
	}
	client := &http.Client{Transport: rt}
	url := "https://" + *addr + *path
	// Warm up: one request opens the connection the workers share.
	if res, err := client.Get(url); err != nil {
		log.Fatalf("warm-up: %v", err)
	} else {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *conc {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				res, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, err = io.CopyBuffer(io.Discard, res.Body, buf)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("proto=%s requests=%d errors=%d rate=%.0f/s\n", *proto, n.Load(), errs.Load(), float64(n.Load())/el)
}
