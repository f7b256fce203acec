// Command concurrent sends -n requests at once (one connection each, opened beforehand) and
// prints the wall time from sending the first to receiving the last whole answer, in
// milliseconds, -rounds times (docs/performance.md, Input gate interleaving).
//
//	concurrent -n 5 -rounds 7 'http://127.0.0.1:18094/obj/sleep?name=NAME&ms=300'
//
// NAME in the URL becomes r1..rN. Every answer must be 200; anything else ends it with an
// error.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	n := flag.Int("n", 5, "concurrent requests per round")
	rounds := flag.Int("rounds", 7, "rounds")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: concurrent [-n N] [-rounds R] URL")
	}
	url := flag.Arg(0)
	clients := make([]*http.Client, *n)
	for i := range clients {
		clients[i] = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	}
	get := func(c *http.Client, u string) error {
		resp, err := c.Get(u)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d %s", u, resp.StatusCode, b)
		}
		return nil
	}
	// Warm: open each connection and make the object live.
	for i, c := range clients {
		if err := get(c, strings.ReplaceAll(url, "NAME", "warm"+strconv.Itoa(i))); err != nil {
			log.Fatal(err)
		}
	}
	var all []time.Duration
	for range *rounds {
		var wg sync.WaitGroup
		errs := make(chan error, *n)
		start := time.Now()
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := get(c, strings.ReplaceAll(url, "NAME", "r"+strconv.Itoa(i+1))); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		all = append(all, time.Since(start))
		close(errs)
		for err := range errs {
			log.Fatal(err)
		}
	}
	ms := make([]string, len(all))
	for i, d := range all {
		ms[i] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	sorted := append([]time.Duration(nil), all...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	fmt.Printf("median %d ms (rounds: %s)\n", sorted[len(sorted)/2].Milliseconds(), strings.Join(ms, " "))
}
