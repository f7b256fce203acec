package observe

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAIModelLabelBounded: the model label is the client's to choose, so a client sending
// many made-up models cannot add a series each: models no provider answered successfully
// are counted as "other", and so are models beyond the bound.
func TestAIModelLabelBounded(t *testing.T) {
	m := NewMetrics()
	m.ObserveAI(&AISample{Route: "ai", Key: "k", Model: "real", Provider: "p", Status: 200})
	for i := range 1000 {
		// Unknown models: no provider serves them, or the provider refuses them.
		m.ObserveAI(&AISample{Route: "ai", Key: "k", Model: fmt.Sprintf("junk-%d", i), Status: 404})
		m.ObserveAI(&AISample{Route: "ai", Key: "k", Model: fmt.Sprintf("junk-%d", i), Provider: "p", Status: 404, FirstByte: 1000})
	}
	m.ObserveAI(&AISample{Route: "ai", Key: "k", Model: strings.Repeat("x", 200), Provider: "p", Status: 200})
	m.ObserveAI(&AISample{Route: "ai", Key: "k", Model: "real", Provider: "p", Status: 404})
	for i := range 2 * maxAIModelLabels {
		m.ObserveAI(&AISample{Route: "ai", Key: "k", Model: fmt.Sprintf("ok-%d", i), Provider: "p", Status: 200})
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	out := string(b)
	for _, bad := range []string{`model="junk-`, `model="xxxx`, fmt.Sprintf(`model="ok-%d"`, maxAIModelLabels)} {
		if strings.Contains(out, bad) {
			t.Errorf("metrics have a series with %s", bad)
		}
	}
	for _, want := range []string{
		`verge_ai_requests_total{cache="",code="404",key="k",model="other",provider="",route="ai"} 1000`,
		`verge_ai_requests_total{cache="",code="404",key="k",model="real",provider="p",route="ai"} 1`,
		`verge_ai_requests_total{cache="",code="200",key="k",model="ok-0",provider="p",route="ai"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if n := strings.Count(out, "verge_ai_requests_total{"); n > maxAIModelLabels+4 {
		t.Errorf("%d request series", n)
	}
}
