package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunL4Redis puts an l4 tcp listener in front of a real redis-server and speaks RESP
// through it: PING, a SET and GET of a 32MiB value, and pipelined INCRs. It skips when
// redis-server is not installed, except under CI, whose .ci/run installs it.
func TestRunL4Redis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (.ci/run installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	redisAddr := freePort(t)
	_, port, _ := net.SplitHostPort(redisAddr)
	dir := t.TempDir()
	rs := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Process.Kill(); rs.Wait() })
	front := freePort(t)
	launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`l4:
  - {name: redis, address: %q, upstream: redis}
upstreams:
  - name: redis
    servers: [{address: %q}]
    health_check: {type: tcp, interval: 2s}
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
`, front, redisAddr, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	var c net.Conn
	var br *bufio.Reader
	waitFor(t, "redis through verge", 60*time.Second, func() bool {
		if c != nil {
			c.Close()
		}
		c, err = net.Dial("tcp", front)
		if err != nil {
			return false
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br = bufio.NewReader(c)
		io.WriteString(c, "PING\r\n")
		line, err := br.ReadString('\n')
		return err == nil && line == "+PONG\r\n"
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute)) // a failure guard

	value := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
	go func() {
		fmt.Fprintf(c, "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n", len(value))
		c.Write(value)
		io.WriteString(c, "\r\n*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
	}()
	if line, _ := br.ReadString('\n'); line != "+OK\r\n" {
		t.Fatalf("SET: got %q", line)
	}
	line, _ := br.ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if err != nil || n != len(value) {
		t.Fatalf("GET: got %q", line)
	}
	got := make([]byte, n+2)
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got[:n], value) {
		t.Fatalf("GET: the value came back different (%v)", err)
	}
	// Pipelined commands.
	var cmds strings.Builder
	for range 1000 {
		cmds.WriteString("INCR counter\r\n")
	}
	io.WriteString(c, cmds.String())
	for i := 1; i <= 1000; i++ {
		line, err := br.ReadString('\n')
		if want := ":" + strconv.Itoa(i) + "\r\n"; err != nil || line != want {
			t.Fatalf("INCR %d: got %q, %v", i, line, err)
		}
	}
}
