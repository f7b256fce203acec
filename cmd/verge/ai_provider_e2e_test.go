package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/verge-edge/verge/ai/local"
)

// healthyProvider starts the healthy OpenAI-compatible server of TestRunAIGateway: the
// built-in local model served over HTTP. It returns the provider's name, the server's URL
// (without /v1) and a count of its API requests.
func healthyProvider(t *testing.T) (name, url string, requests func() int64) {
	m, err := local.Open("")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	h := m.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return "local", ts.URL, n.Load
}
