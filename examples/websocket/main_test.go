package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/verge-edge/verge/server"
)

func TestWebSocketProxy(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, msg)
		}
	}))
	defer ws.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
	defer web.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &server.Server{Handler: newWSProxy(ws.Listener.Addr().String(), web.Listener.Addr().String(), "https://app.example.test")}
	go srv.Serve(ln)
	defer srv.Close()
	base := ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.test"}}}
	c, _, err := websocket.Dial(ctx, "ws://"+base+"/ws/chat", good)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"hello", "world"} {
		c.Write(ctx, websocket.MessageText, []byte(m))
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != m {
			t.Fatalf("echo %q: got %q %v", m, got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")

	evil := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}}
	_, resp, err := websocket.Dial(ctx, "ws://"+base+"/ws/chat", evil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: err %v resp %v, want 403", err, resp)
	}

	r, err := http.Get("http://" + base + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if string(body) != "page" {
		t.Fatalf("web route: %q", body)
	}
}
