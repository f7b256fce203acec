package main

import (
	"net/http/httptest"
	"testing"

	"github.com/verge-edge/verge/ai/aitest"
)

// healthyProvider starts the healthy OpenAI-compatible server of TestRunAIGateway and returns
// its name, base URL (without /v1) and request count.
func healthyProvider(t *testing.T) (name, url string, requests func() int64) {
	s := &aitest.Server{Name: "healthy"}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return "healthy", ts.URL, s.Requests
}
