// Command rateload is an open-loop HTTP/1.1 load generator: it sends requests at a fixed rate
// over N keep-alive connections and reports latency percentiles.
//
// Request i is due at start + i/rate whatever happened before it. A request waits for a free
// connection when all are busy, and its latency is measured from its due time, not from when
// it was written, so a stalled proxy is charged for the requests it delayed (no coordinated
// omission; the method wrk2 uses). Pin it to a core of its own or shared with the origin;
// its own scheduling noise is part of every proxy's figure alike.
//
//	rateload -addr 127.0.0.1:18081 -path /1k -rate 10000 -conns 64 -d 8s
//
// Output, one line: rate=... sent=... ok=... errors=... p50=...ms p90=... p99=... p999=... max=...
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "server address")
	path := flag.String("path", "/1k", "request path")
	rate := flag.Float64("rate", 10000, "requests per second")
	conns := flag.Int("conns", 64, "keep-alive connections")
	dur := flag.Duration("d", 8*time.Second, "duration of the measured run")
	warm := flag.Duration("warmup", time.Second, "unmeasured run at the same rate before it")
	flag.Parse()
	if *rate <= 0 || *conns <= 0 || *dur <= 0 {
		log.Fatal("rateload: -rate, -conns and -d must be positive")
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: bench\r\n\r\n")

	clients := make([]*client, *conns)
	for i := range clients {
		c, err := dial(*addr)
		if err != nil {
			log.Fatalf("rateload: dial: %v", err)
		}
		clients[i] = c
	}
	if *warm > 0 {
		run(clients, req, *rate, *warm)
	}
	r := run(clients, req, *rate, *dur)
	lat := r.lat
	slices.Sort(lat)
	pct := func(p float64) string {
		if len(lat) == 0 {
			return "nan"
		}
		i := int(p * float64(len(lat)-1))
		return strconv.FormatFloat(float64(lat[i])/1e6, 'f', 3, 64) + "ms"
	}
	maxv := "nan"
	if len(lat) > 0 {
		maxv = strconv.FormatFloat(float64(lat[len(lat)-1])/1e6, 'f', 3, 64) + "ms"
	}
	fmt.Printf("rate=%.0f sent=%d ok=%d errors=%d p50=%s p90=%s p99=%s p999=%s max=%s\n",
		*rate, r.sent, len(lat), r.errs, pct(0.50), pct(0.90), pct(0.99), pct(0.999), maxv)
	if r.errs > 0 {
		os.Exit(1)
	}
}

type result struct {
	sent int
	errs int64
	lat  []time.Duration
}

// run sends rate*d requests, request i due at start+i/rate, and waits for all of them.
func run(clients []*client, req []byte, rate float64, d time.Duration) result {
	total := int(rate * d.Seconds())
	due := make(chan time.Time, total)
	lats := make([][]time.Duration, len(clients))
	var errs atomic.Int64
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]time.Duration, 0, total/len(clients)*2)
			for t := range due {
				if c == nil {
					errs.Add(1)
					continue
				}
				if err := c.do(req); err != nil {
					errs.Add(1)
					c.close()
					c = nil
					continue
				}
				own = append(own, time.Since(t))
			}
			lats[i] = own
		}()
	}
	start := time.Now()
	interval := float64(time.Second) / rate
	for i := 0; i < total; {
		now := time.Since(start)
		for ; i < total && time.Duration(float64(i)*interval) <= now; i++ {
			due <- start.Add(time.Duration(float64(i) * interval))
		}
		if i < total {
			next := time.Duration(float64(i) * interval)
			if wait := next - time.Since(start); wait > 0 {
				time.Sleep(wait)
			}
		}
	}
	close(due)
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	for i, c := range clients {
		if c == nil || c.dead {
			clients[i] = nil
		}
	}
	return result{sent: total, errs: errs.Load(), lat: all}
}

// client is one keep-alive HTTP/1.1 connection that reads Content-Length responses.
type client struct {
	c    net.Conn
	br   *bufio.Reader
	dead bool
}

func dial(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &client{c: c, br: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (c *client) close() { c.dead = true; c.c.Close() }

var errResponse = errors.New("rateload: malformed or non-200 response")

// do writes req and reads one whole response; only Content-Length framing is accepted.
func (c *client) do(req []byte) error {
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	status, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return errResponse
	}
	n := -1
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return errResponse
			}
		}
	}
	if n < 0 {
		return errResponse
	}
	_, err = c.br.Discard(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
