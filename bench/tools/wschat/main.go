// Command wschat loads examples/workers/chat: it opens -n WebSockets spread over -rooms
// rooms, has every member send -msgs messages, checks that every member received every
// message of its room, each sender's in order, and reports the server process's RSS (from
// /proc/PID/status) at each stage: sockets open, after the messages, and, with -evicted,
// once every room was evicted (hibernation: the sockets stay open, no instance is live).
// bench/ws-chat.sh runs it against `verge run`.
//
// The client is hand-written (handshake, masked frames, a small reader) so that it costs
// little next to the server it measures.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18090", "verge listener")
	admin := flag.String("admin", "127.0.0.1:18091", "verge admin API (for the metrics)")
	pid := flag.Int("pid", 0, "verge's process ID (for its RSS)")
	n := flag.Int("n", 10000, "sockets")
	rooms := flag.Int("rooms", 100, "rooms")
	msgs := flag.Int("msgs", 2, "messages each member sends")
	evicted := flag.Duration("evicted", 0, "wait up to this long for every room to be evicted, then report the RSS again (0: do not wait)")
	flag.Parse()
	if *n%*rooms != 0 {
		log.Fatal("-n must be a multiple of -rooms")
	}
	per := *n / *rooms
	rss := func(stage string) {
		if *pid == 0 {
			return
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", *pid))
		if err != nil {
			log.Fatal(err)
		}
		var rss string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				rss = strings.Join(strings.Fields(l)[1:], " ")
			}
		}
		fmt.Printf("%-15s rss=%s live_rooms=%s instance_memory=%s open_sockets=%s\n", stage, rss,
			metric(*admin, `verge_worker_durable_objects{worker="chat"}`),
			metric(*admin, `verge_worker_memory_bytes{worker="chat"}`),
			metric(*admin, `verge_worker_websocket_open{worker="chat"}`))
	}
	rss("before")

	start := time.Now()
	clients := make([]*client, *n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed atomic.Int32
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(*addr, fmt.Sprintf("/room/r%d?name=c%d", i%*rooms, i))
			if err != nil {
				if failed.Add(1) <= 5 {
					log.Printf("client %d: %v", i, err)
				}
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		log.Fatalf("%d of %d sockets failed to open", failed.Load(), *n)
	}
	fmt.Printf("opened %d sockets over %d rooms in %v\n", *n, *rooms, time.Since(start).Round(time.Millisecond))
	for r := range *rooms {
		waitMembers(*addr, fmt.Sprintf("r%d", r), per)
	}
	rss("sockets open")

	// Every member reads in its own goroutine; each checks per-sender order.
	total := per * *msgs
	var got atomic.Int64
	errs := make(chan error, *n)
	var rwg sync.WaitGroup
	for i, c := range clients {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			next := map[string]int{}
			for k := 0; k < total; k++ {
				c.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
				m, err := c.read()
				if err != nil {
					errs <- fmt.Errorf("client %d after %d messages: %w", i, k, err)
					return
				}
				from, seq, ok := strings.Cut(m, ": ")
				if !ok {
					errs <- fmt.Errorf("client %d: unexpected message %q", i, m)
					return
				}
				if seq != strconv.Itoa(next[from]) {
					errs <- fmt.Errorf("client %d: got %q, want %s: %d (out of order)", i, m, from, next[from])
					return
				}
				next[from]++
				got.Add(1)
			}
		}()
	}
	start = time.Now()
	var swg sync.WaitGroup
	for _, c := range clients {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for k := range *msgs {
				if err := c.send(strconv.Itoa(k)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	swg.Wait()
	rwg.Wait()
	el := time.Since(start)
	close(errs)
	bad := 0
	for err := range errs {
		if bad < 5 {
			log.Print(err)
		}
		bad++
	}
	sent := *n * *msgs
	fmt.Printf("sent %d messages, delivered %d of %d (%d per member) in %v: %.0f deliveries/s\n",
		sent, got.Load(), int64(*n)*int64(total), total, el.Round(time.Millisecond), float64(got.Load())/el.Seconds())
	if bad > 0 || got.Load() != int64(*n)*int64(total) {
		log.Fatalf("FAIL: %d members missed messages or got them out of order", bad)
	}
	fmt.Println("every member got every message of its room, each sender's in order")
	rss("after messages")

	if *evicted > 0 {
		deadline := time.Now().Add(*evicted)
		for {
			live, err := liveObjects(*admin)
			if err == nil && live == 0 {
				break
			}
			if time.Now().After(deadline) {
				log.Fatalf("rooms still live after %v (%v, %v)", *evicted, live, err)
			}
			time.Sleep(time.Second)
		}
		rss("rooms evicted")
		// A message wakes its room: the sockets survived the eviction.
		for _, c := range clients[:*rooms] {
			if err := c.send("wake"); err != nil {
				log.Fatal(err)
			}
		}
		for i, c := range clients[:*rooms] {
			c.conn.SetReadDeadline(time.Now().Add(time.Minute))
			m, err := c.read()
			if err != nil || m != fmt.Sprintf("c%d: wake", i) {
				log.Fatalf("after eviction client %d got %q, %v", i, m, err)
			}
		}
		fmt.Println("a message to each evicted room woke it and reached its members")
		rss("rooms woken")
	}
	for _, c := range clients {
		c.conn.Close()
	}
}

func waitMembers(addr, room string, want int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/room/" + room + "/members")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == strconv.Itoa(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			log.Fatalf("room %s: members never reached %d", room, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric returns the value of one series of the admin API's /metrics, "?" when absent.
func metric(admin, series string) string {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, series+" ") {
			return strings.TrimPrefix(l, series+" ")
		}
	}
	return "?"
}

// liveObjects reads verge_worker_durable_objects of the chat worker.
func liveObjects(admin string) (int, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, `verge_worker_durable_objects{worker="chat"}`) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v), err
		}
	}
	return 0, errors.New("no verge_worker_durable_objects series")
}

type client struct {
	conn net.Conn
	br   *bufio.Reader
	mu   sync.Mutex
}

func dial(addr, path string) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	rand.Read(k[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n", path, base64.StdEncoding.EncodeToString(k[:]))
	br := bufio.NewReaderSize(conn, 512)
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != 101 {
		conn.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	return &client{conn: conn, br: br}, nil
}

// send writes a masked text frame.
func (c *client) send(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(s) > 125 {
		return errors.New("message too long for this client")
	}
	f := []byte{0x81, 0x80 | byte(len(s)), 1, 2, 3, 4}
	for i := range len(s) {
		f = append(f, s[i]^f[2+i&3])
	}
	_, err := c.conn.Write(f)
	return err
}

// read returns the next text message (server frames are small and unfragmented here).
func (c *client) read() (string, error) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return "", err
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var x [2]byte
			if _, err := io.ReadFull(c.br, x[:]); err != nil {
				return "", err
			}
			n = int(binary.BigEndian.Uint16(x[:]))
		case 127:
			return "", errors.New("unexpected large frame")
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return "", err
		}
		switch h[0] & 0x0f {
		case 1:
			return string(p), nil
		case 8:
			return "", fmt.Errorf("closed by the server: % x", p)
		}
	}
}
