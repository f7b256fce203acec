// Command flood measures how one client's latency holds while another floods the proxy: a
// "good" client sends -rate requests per second from one loopback address on a keep-alive
// connection while, in the second half of the run, a flooder sends as fast as it can over
// -conns keep-alive connections from another. It prints the good client's p50/p99 without
// and with the flood, its failures, and the flooder's answers by status.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("target", "127.0.0.1:18081", "proxy address")
	path := flag.String("path", "/", "request path")
	rate := flag.Int("rate", 100, "good client's requests per second")
	dur := flag.Duration("d", 10*time.Second, "duration of each phase (quiet, then flood)")
	conns := flag.Int("conns", 64, "flooder's connections")
	goodIP := flag.String("good", "127.0.0.3", "good client's source address")
	floodIP := flag.String("flooder", "127.0.0.2", "flooder's source address")
	role := flag.String("role", "both", "both (quiet phase, then flooded), good (the good client alone, one phase) or flood (the flooder alone, for -d)")
	flag.Parse()
	switch *role {
	case "good":
		lat, failed := good(*target, *path, *goodIP, *rate, *dur)
		slices.Sort(lat)
		q := func(f float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, int(f*float64(len(lat))))]
		}
		fmt.Printf("good client %d req/s: p50 %v p99 %v max %v (%d ok, %d failed)\n", *rate, q(0.5), q(0.99), q(1), len(lat), failed)
		return
	case "flood":
		stop := make(chan struct{})
		var statuses sync.Map
		var sent atomic.Int64
		var wg sync.WaitGroup
		for range *conns {
			wg.Add(1)
			go func() { defer wg.Done(); flood(*target, *path, *floodIP, stop, &statuses, &sent) }()
		}
		time.Sleep(*dur)
		close(stop)
		wg.Wait()
		fmt.Printf("flooder: %d requests in %v (%.0f/s):", sent.Load(), *dur, float64(sent.Load())/dur.Seconds())
		statuses.Range(func(k, v any) bool { fmt.Printf(" %v=%d", k, v.(*atomic.Int64).Load()); return true })
		fmt.Println()
		return
	}

	quiet, qfail := good(*target, *path, *goodIP, *rate, *dur)
	stop := make(chan struct{})
	var statuses sync.Map
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range *conns {
		wg.Add(1)
		go func() { defer wg.Done(); flood(*target, *path, *floodIP, stop, &statuses, &sent) }()
	}
	loud, lfail := good(*target, *path, *goodIP, *rate, *dur)
	close(stop)
	wg.Wait()
	p := func(l []time.Duration, q float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		slices.Sort(l)
		return l[min(len(l)-1, int(q*float64(len(l))))]
	}
	fmt.Printf("good client %d req/s: quiet p50 %v p99 %v (%d ok, %d failed); flooded p50 %v p99 %v (%d ok, %d failed); p99 ratio %.2f\n",
		*rate, p(quiet, 0.5), p(quiet, 0.99), len(quiet), qfail, p(loud, 0.5), p(loud, 0.99), len(loud), lfail,
		float64(p(loud, 0.99))/float64(max(p(quiet, 0.99), 1)))
	fmt.Printf("flooder: %d requests in %v (%.0f/s):", sent.Load(), *dur, float64(sent.Load())/dur.Seconds())
	statuses.Range(func(k, v any) bool { fmt.Printf(" %v=%d", k, v.(*atomic.Int64).Load()); return true })
	fmt.Println()
}

// good sends rate requests per second for d on one keep-alive connection (reconnecting after
// a failure) and returns the latencies of the successful ones and the failures.
func good(target, path, ip string, rate int, d time.Duration) ([]time.Duration, int) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
	var lat []time.Duration
	failed := 0
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		t0 := time.Now()
		resp, err := c.Get("http://" + target + path)
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, failed
}

// flood sends requests back to back on one connection until stop, counting statuses.
func flood(target, path, ip string, stop chan struct{}, statuses *sync.Map, sent *atomic.Int64) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
	for {
		select {
		case <-stop:
			return
		default:
		}
		conn, err := d.Dial("tcp", target)
		if err != nil {
			count(statuses, "dial_error")
			continue
		}
		br := bufio.NewReader(conn)
		for {
			select {
			case <-stop:
				conn.Close()
				return
			default:
			}
			if _, err := conn.Write(req); err != nil {
				break
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				count(statuses, "closed")
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			sent.Add(1)
			count(statuses, resp.StatusCode)
		}
		conn.Close()
	}
}

func count(m *sync.Map, k any) {
	v, _ := m.LoadOrStore(k, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}
