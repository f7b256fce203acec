package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verge-edge/verge/internal/testwasm"
)

// checkChat drives examples/workers/chat: the worker's own echo socket, two rooms whose
// members get every message in order, a member's /who, and an unmasked frame answered with
// close code 1002.
func checkChat(t *testing.T, addr string, logs fmt.Stringer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(path string) *websocket.Conn {
		t.Helper()
		c, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
		if err != nil {
			t.Fatalf("dial %s: %v (%v)\n%s", path, err, resp, logs)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	read := func(c *websocket.Conn) string {
		t.Helper()
		_, p, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v\n%s", err, logs)
		}
		return string(p)
	}
	echo := dial("/echo")
	for _, m := range []string{"one", "two"} {
		echo.Write(ctx, websocket.MessageText, []byte(m))
		if got := read(echo); got != m {
			t.Fatalf("echo %q, want %q", got, m)
		}
	}
	echo.Close(websocket.StatusNormalClosure, "")

	const members, msgs = 3, 10
	var conns []*websocket.Conn
	for _, room := range []string{"red", "blue"} {
		for i := range members {
			conns = append(conns, dial(fmt.Sprintf("/room/%s?name=%s%d", room, room, i)))
		}
	}
	waitFor(t, "members to join", 30*time.Second, func() bool {
		for _, room := range []string{"red", "blue"} {
			if _, body, _ := doRequest(http.DefaultClient, addr, "GET", "/room/"+room+"/members", ""); body != strconv.Itoa(members) {
				return false
			}
		}
		return true
	})
	for j := range msgs {
		for _, c := range conns {
			if err := c.Write(ctx, websocket.MessageText, []byte(strconv.Itoa(j))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, c := range conns {
		room := "red"
		if k >= members {
			room = "blue"
		}
		next := map[string]int{}
		for range members * msgs {
			s := read(c)
			from, n, ok := strings.Cut(s, ": ")
			if !ok || !strings.HasPrefix(from, room) {
				t.Fatalf("member %d of %s got %q (another room's message?)", k, room, s)
			}
			if n != strconv.Itoa(next[from]) {
				t.Fatalf("member %d got %q, want %s: %d", k, s, from, next[from])
			}
			next[from]++
		}
	}
	conns[0].Write(ctx, websocket.MessageText, []byte("/who"))
	if got := read(conns[0]); got != fmt.Sprintf("members: %d", members) {
		t.Fatalf("/who = %q", got)
	}

	// A frame attack through the whole server: an unmasked frame gets 1002.
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(nc, "GET /room/red?name=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("raw handshake: %v %v\n%s", resp, err, logs)
	}
	nc.Write([]byte{0x81, 0x02, 'h', 'i'}) // unmasked text frame
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil || h[0] != 0x88 || int(h[2])<<8|int(h[3]) != 1002 {
		t.Fatalf("after an unmasked frame: % x %v, want a close frame with 1002", h, err)
	}
}

// TestDevChatWebSockets runs the chat example through `verge dev`.
func TestDevChatWebSockets(t *testing.T) {
	p := startDev(t, t.TempDir(), filepath.Join(testwasm.Root(), "examples", "workers", "chat"))
	checkChat(t, p.addr, p.stderr)
}

// TestRunChatWebSockets runs the chat example through `verge run` with a worker route, and
// checks the verge_worker_websocket_* metrics.
func TestRunChatWebSockets(t *testing.T) {
	module := testwasm.BuildFile(t, "examples/workers/chat")
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
routes: [{name: chat, worker: chat}]
workers:
  - name: chat
    module: %q
    durable_objects: [{binding: ROOMS, class: Room}]
`, p.addr, adminAddr, p.pidFile, module)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		code, _, err := doRequest(&http.Client{Timeout: 5 * time.Second}, p.addr, "GET", "/room/probe/members", "")
		return err == nil && code == 200
	})
	checkChat(t, p.addr, p.stderr)
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	series := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && strings.HasPrefix(line, "verge_worker_websocket") {
			series[line[:i]], _ = strconv.ParseFloat(line[i+1:], 64)
		}
	}
	if got := series[`verge_worker_websocket_messages_total{direction="in",worker="chat"}`]; got < 60 {
		t.Errorf("messages in = %v, want >= 60\n%s", got, b)
	}
	if got := series[`verge_worker_websocket_messages_total{direction="out",worker="chat"}`]; got < 180 {
		t.Errorf("messages out = %v, want >= 180", got)
	}
	if got := series[`verge_worker_websocket_open{worker="chat"}`]; got < 6 {
		t.Errorf("open sockets = %v, want >= 6 (the room members are still connected)", got)
	}
}
