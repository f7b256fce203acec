package ai_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/verge-edge/verge/ai"
)

// sseOrigin answers every request with one event at once and then the end of the stream.
func sseOrigin() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "data: [DONE]\n\n")
	}))
}

// firstToken sends one streamed request to url and returns when the first event arrived.
func firstToken(b *testing.B, c *http.Client, url string) {
	req, _ := http.NewRequestWithContext(context.Background(), "POST", url,
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		b.Fatalf("%q %v", line, err)
	}
	io.Copy(io.Discard, br)
	res.Body.Close()
}

// BenchmarkFirstToken measures the time to the first event of a stream, straight from the
// origin and through a Gateway (both over loopback HTTP/1.1 with keep-alive): the
// difference is what the gateway adds.
func BenchmarkFirstToken(b *testing.B) {
	origin := sseOrigin()
	defer origin.Close()
	c, err := ai.NewClient([]ai.Provider{{Name: "o", BaseURL: origin.URL + "/v1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	g, _ := ai.NewGateway(ai.GatewayConfig{Client: c})
	gw := httptest.NewServer(g)
	defer gw.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, tc := range []struct{ name, url string }{
		{"direct", origin.URL + "/v1/chat/completions"},
		{"gateway", gw.URL + "/v1/chat/completions"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				firstToken(b, hc, tc.url)
			}
		})
	}
}

// BenchmarkGatewayCacheHit measures a request answered from the cache: authentication,
// body normalisation and hashing, lookup and the write.
func BenchmarkGatewayCacheHit(b *testing.B) {
	origin := sseOrigin()
	defer origin.Close()
	c, _ := ai.NewClient([]ai.Provider{{Name: "o", BaseURL: origin.URL + "/v1"}})
	defer c.Close()
	g, _ := ai.NewGateway(ai.GatewayConfig{Client: c, Cache: &ai.CacheConfig{TTL: 3600e9, MaxEntries: 10, MaxBytes: 1 << 20, MaxEntrySize: 1 << 16}})
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("word ", 200) + `"}]}`
	serve := func() int {
		req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		return w.Code
	}
	if serve() != 200 {
		b.Fatal("first request failed")
	}
	b.ReportAllocs()
	for b.Loop() {
		if code := serve(); code != 200 {
			b.Fatal(fmt.Sprint(code))
		}
	}
}
