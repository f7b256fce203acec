// Command l4stream is the source and sink of the layer 4 benchmark (bench/l4.sh): a server
// that, on each connection, reads everything the client sends while it sends -bytes back,
// and a client that opens -conns connections through a proxy and does the same from its
// side; it prints the bytes moved and the seconds taken.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: l4stream server -listen ADDR -bytes N | client -addr ADDR -bytes N -conns C")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18201", "server: address to listen on")
	addr := fs.String("addr", "127.0.0.1:18202", "client: address to connect to")
	n := fs.Int64("bytes", 1<<30, "bytes sent each way per connection")
	conns := fs.Int("conns", 4, "client: connections at once")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "server":
		serve(*listen, *n)
	case "client":
		client(*addr, *n, *conns)
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

var zeros = make([]byte, 256<<10)

// send writes n bytes to c and half-closes it.
func send(c net.Conn, n int64) error {
	for n > 0 {
		m := min(n, int64(len(zeros)))
		if _, err := c.Write(zeros[:m]); err != nil {
			return err
		}
		n -= m
	}
	return c.(*net.TCPConn).CloseWrite()
}

// exchange sends n bytes and reads until EOF at the same time; it returns the bytes read.
func exchange(c net.Conn, n int64) (int64, error) {
	errc := make(chan error, 1)
	go func() { errc <- send(c, n) }()
	got, err := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
	if werr := <-errc; err == nil {
		err = werr
	}
	return got, err
}

func serve(addr string, n int64) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			exchange(c, n)
		}()
	}
}

func client(addr string, n int64, conns int) {
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				log.Fatal(err)
			}
			defer c.Close()
			got, err := exchange(c, n)
			if err != nil || got != n {
				log.Fatalf("received %d of %d bytes: %v", got, n, err)
			}
			mu.Lock()
			total += got + n
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("%d %.3f\n", total, time.Since(start).Seconds())
}
