package http1_test

import (
	"context"
	"io"
	"net"

	"github.com/verge-edge/verge/http1"
	"github.com/verge-edge/verge/message"
)

// A server answering every request with a fixed body, serving the connections of a listener.
func ExampleServer() {
	srv := &http1.Server{Handler: func(ex *http1.Exchange) {
		body := []byte("hello\n")
		resp := &message.Response{Status: 200, ContentLength: int64(len(body))}
		resp.Header.Add("Content-Type", "text/plain")
		if err := ex.WriteHeader(resp); err != nil {
			ex.Abort(err)
			return
		}
		ex.Write(body)
		ex.Finish(nil)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(context.Background(), c, nil)
		}
	}()
}

// A round trip on an upstream connection; closing the body hands the connection back.
func ExampleClientConn_RoundTrip() {
	c, err := net.Dial("tcp", "127.0.0.1:8080")
	if err != nil {
		return
	}
	cc := http1.NewClientConn(c, http1.ClientOptions{
		Release: func(cc *http1.ClientConn, reusable bool) {
			if !reusable {
				return // already closed by the ClientConn
			}
			// Put cc back into an idle pool here.
		},
	})
	req := &message.Request{Method: "GET", Target: "/", Authority: "origin.internal"}
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
}
