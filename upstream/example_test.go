package upstream_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

func ExampleTransport_RoundTrip() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	defer origin.Close()

	var tr upstream.Transport // the zero value is ready to use
	defer tr.Close()
	peer := &upstream.Peer{Address: origin.Listener.Addr().String(), Host: "api.internal"}
	for range 3 {
		req := &message.Request{Method: "GET", Target: "/", Proto: message.HTTP11}
		resp, err := tr.RoundTrip(context.Background(), peer, req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close() // returns the connection to the pool
		fmt.Println(resp.Status, string(body))
	}
	s := tr.Stats()
	fmt.Printf("dials=%d requests=%d reused=%d\n", s.Dials, s.Requests, s.ReusedRequests)
	// Output:
	// 200 hello from api.internal
	// 200 hello from api.internal
	// 200 hello from api.internal
	// dials=1 requests=3 reused=2
}
