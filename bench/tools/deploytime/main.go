// Command deploytime measures how fast a Verge worker serves after a restart or a deploy,
// through the verge binary (docs/performance.md, Workers: deploys and restarts).
//
//	deploytime restart -verge ./verge -c workers.yaml -url http://127.0.0.1:18080/hello [-clear DIR] [-n 5]
//
// starts `verge run -c FILE` n times and reports, for each, the time from starting the
// process to the first 200 answer from url (a new connection tried every millisecond), then
// stops it with SIGTERM. With -clear the directory (the compilation cache, <worker_data>/cache)
// is emptied before each start.
//
//	deploytime deploy -admin 127.0.0.1:9901 -worker hello -url http://127.0.0.1:18080/hello -module hello.wasm [-n 5] [-fresh]
//
// deploys variants of the module through the admin API (PUT /workers/NAME) and reports, for
// each, the time from sending the deploy to the first 200 answer from url after it (the
// deploy answers once the new version serves), with the compile time the server reported.
// Variants differ by a custom section appended to the module, so each is a distinct version
// with its own compilation: without -fresh two variants are deployed once first (compiled
// and cached) and measured when deployed again, alternately, so every measured deploy switches
// versions and finds its compiled code cached; with -fresh each measured variant is new
// (never compiled). With -salt S the variants are the same in every run given S, so that a
// later process finds them in the on-disk cache only (-warm=false measures its first
// deploys).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deploytime restart|deploy [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "restart":
		err = restart(os.Args[2:])
	case "deploy":
		err = deploy(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploytime:", err)
		os.Exit(1)
	}
}

// client opens a new connection per request: the first answer after a start must not ride
// on a connection opened earlier.
var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// firstOK polls url until it answers 200, up to limit, and returns the time since start.
func firstOK(url string, start time.Time, limit time.Duration) (time.Duration, error) {
	for time.Since(start) < limit {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s: no 200 answer within %v", url, limit)
}

func restart(args []string) error {
	fs := flag.NewFlagSet("restart", flag.ExitOnError)
	bin := fs.String("verge", "verge", "verge binary")
	cfg := fs.String("c", "verge.yaml", "config file")
	url := fs.String("url", "", "worker URL to poll")
	clear := fs.String("clear", "", "directory to empty before each start (the compilation cache)")
	n := fs.Int("n", 5, "starts")
	fs.Parse(args)
	var times []time.Duration
	for i := 0; i < *n; i++ {
		if *clear != "" {
			if err := os.RemoveAll(*clear); err != nil {
				return err
			}
		}
		cmd := exec.Command(*bin, "run", "-c", *cfg)
		cmd.Stderr = io.Discard
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		d, err := firstOK(*url, start, 2*time.Minute)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if err != nil {
			return err
		}
		fmt.Printf("start %d: first response after %.1f ms\n", i+1, ms(d))
		times = append(times, d)
	}
	summary(times)
	return nil
}

func deploy(args []string) error {
	fs := flag.NewFlagSet("deploy", flag.ExitOnError)
	admin := fs.String("admin", "127.0.0.1:9901", "admin API address")
	name := fs.String("worker", "", "worker name")
	url := fs.String("url", "", "worker URL to poll")
	file := fs.String("module", "", "module to deploy (variants of it)")
	n := fs.Int("n", 5, "measured deploys")
	fresh := fs.Bool("fresh", false, "measure never-compiled variants")
	salt := fs.Int64("salt", 0, "names the variants (0: unique to this run); the same salt in a later process makes the same variants, found in the on-disk cache")
	warm := fs.Bool("warm", true, "deploy the two variants once before measuring (without -fresh)")
	fs.Parse(args)
	mod, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	if *salt == 0 {
		*salt = time.Now().UnixNano()
	}
	variant := func(i int) []byte { return withCustomSection(mod, fmt.Sprintf("deploytime-%d-%d", *salt, i)) }
	if !*fresh && *warm {
		for i := 0; i < 2; i++ {
			if _, _, err := put(*admin, *name, variant(i)); err != nil {
				return err
			}
		}
	}
	var times []time.Duration
	for i := 0; i < *n; i++ {
		m := variant(i % 2)
		if *fresh {
			m = variant(100 + i)
		}
		start := time.Now()
		compile, version, err := put(*admin, *name, m)
		if err != nil {
			return err
		}
		put := time.Since(start)
		d, err := firstOK(*url, start, time.Minute)
		if err != nil {
			return err
		}
		fmt.Printf("deploy %d: version %s, deploy answered after %.1f ms (server compile %.1f ms), first response %.1f ms\n", i+1, version, ms(put), compile, ms(d))
		times = append(times, d)
	}
	summary(times)
	return nil
}

// put deploys module and returns the server's compile time (ms) and the version id.
func put(admin, name string, module []byte) (float64, string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), "PUT", "http://"+admin+"/workers/"+name, bytes.NewReader(module))
	req.Header.Set("Content-Type", "application/wasm")
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, "", fmt.Errorf("deploy: %d %s", resp.StatusCode, b)
	}
	var st struct {
		Version string  `json:"version"`
		Compile float64 `json:"compile_ms"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, "", errors.New("deploy: answer is not JSON: " + string(b))
	}
	return st.Compile, st.Version, nil
}

// withCustomSection appends a custom section named name (section id 0) to a module. The
// section carries a few payload bytes: wazero refuses an empty one.
func withCustomSection(mod []byte, name string) []byte {
	body := append(append(uleb(uint32(len(name))), name...), "variant"...)
	out := append(append([]byte{}, mod...), 0)
	out = append(out, uleb(uint32(len(body)))...)
	return append(out, body...)
}

func uleb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func summary(ts []time.Duration) {
	if len(ts) == 0 {
		return
	}
	s := append([]time.Duration(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	fmt.Printf("min %.1f ms, median %.1f ms, max %.1f ms\n", ms(s[0]), ms(s[len(s)/2]), ms(s[len(s)-1]))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
