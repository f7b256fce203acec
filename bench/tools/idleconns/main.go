// Command idleconns opens N keep-alive connections, sends one request on each and reads the
// response (so the server has served a request on it, as on a real idle client), prints
// "open N", and holds them for -hold before exiting. The benchmark reads the proxy's RSS
// while they are held.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "proxy address")
	path := flag.String("path", "/1k", "request path")
	n := flag.Int("n", 8000, "connections")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold them open")
	flag.Parse()
	conns := make([]net.Conn, 0, *n)
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", *path)
	for i := 0; i < *n; i++ {
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			log.Fatalf("write %d: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			log.Fatalf("read %d: %v", i, err)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	fmt.Println("open", len(conns))
	time.Sleep(*hold)
	for _, c := range conns {
		c.Close()
	}
}
