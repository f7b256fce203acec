// Command firstbyte measures how long a streamed response takes to deliver its first body
// byte and its whole body: it sends GET url n times, one after the other, on a fresh
// connection each, and prints the median and the maximum of both.
//
//	firstbyte -n 5 http://127.0.0.1:8080/ticks?n=2&ms=2000
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"
)

func main() {
	n := flag.Int("n", 5, "requests")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: firstbyte [-n N] URL")
		os.Exit(2)
	}
	url := flag.Arg(0)
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	var first, total []time.Duration
	for range *n {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			fmt.Fprintln(os.Stderr, "first byte:", err)
			os.Exit(1)
		}
		first = append(first, time.Since(start))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		total = append(total, time.Since(start))
	}
	slices.Sort(first)
	slices.Sort(total)
	fmt.Printf("first byte: median %v max %v; whole body: median %v max %v (%d requests)\n",
		first[len(first)/2].Round(10*time.Microsecond), first[len(first)-1].Round(10*time.Microsecond),
		total[len(total)/2].Round(time.Millisecond), total[len(total)-1].Round(time.Millisecond), len(first))
}
