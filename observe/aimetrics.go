package observe

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AISample is one ai_gateway request, as the metrics count it.
type AISample struct {
	// Route is the route's name; Key the client's key name ("anonymous" without keys).
	Route, Key string
	// Op is chat, completions, embeddings or models.
	Op string
	// Model is the requested model; Provider the one that answered ("" when none did).
	Model, Provider string
	// Cache is hit, miss, bypass or "".
	Cache string
	// Status is the status sent to the client.
	Status int
	// Stream reports a streamed request.
	Stream bool
	// FirstByte is the time to the first response body byte (the first token of a
	// stream); zero when none was sent.
	FirstByte time.Duration
	// TokensIn, TokensOut and Cost are the request's prompt and completion tokens and their
	// price.
	TokensIn, TokensOut int64
	Cost                float64
	// Failed names the providers that failed for the request, in order.
	Failed []string
}

// AIRecord is the ai_* fields of an access-log record.
type AIRecord struct {
	Key, Provider, Model, Cache string
	FirstByte                   time.Duration
	TokensIn, TokensOut         int64
	Cost                        float64
}

// aiMetrics are the metrics of ai_gateway routes (router/aigateway.go).
type aiMetrics struct {
	requests  *prometheus.CounterVec
	tokens    *prometheus.CounterVec
	cost      *prometheus.CounterVec
	firstByte *prometheus.HistogramVec
	failures  *prometheus.CounterVec

	// models are the model label values in use: the model is the client's to choose, so
	// only models a provider answered successfully get a label of their own (at most
	// maxAIModelLabels), every other one is counted as OtherAIModel.
	mu     sync.Mutex
	models map[string]struct{}
}

// Bounds of the model label of the AI metrics.
const (
	maxAIModelLabels   = 256
	maxAIModelLabelLen = 128
)

// OtherAIModel is the model label of requests for a model that no provider answered
// successfully before (an unknown or mistyped one), or beyond the first 256 models.
const OtherAIModel = "other"

// modelLabel returns the label value for s's model.
func (a *aiMetrics) modelLabel(s *AISample) string {
	m := s.Model
	if m == "" {
		return ""
	}
	if len(m) > maxAIModelLabelLen {
		return OtherAIModel
	}
	ok := s.Provider != "" && s.Status/100 == 2
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, seen := a.models[m]; seen {
		return m
	}
	if ok && len(a.models) < maxAIModelLabels {
		a.models[m] = struct{}{}
		return m
	}
	return OtherAIModel
}

// firstTokenBuckets are finer than latencyBuckets at the low end: a cached answer or a local
// model's first token takes well under a millisecond.
var firstTokenBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

func newAIMetrics(reg *prometheus.Registry) *aiMetrics {
	a := &aiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ai_requests_total",
			Help: "ai_gateway requests by route, client key, provider that answered (empty: none), model, cache result (hit, miss, bypass, empty) and status code.",
		}, []string{"route", "key", "provider", "model", "cache", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ai_tokens_total",
			Help: "Tokens of ai_gateway requests answered by a provider, by route, client key, provider, model and direction (in: prompt, out: completion).",
		}, []string{"route", "key", "provider", "model", "direction"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ai_cost_total",
			Help: "Price of the tokens of ai_gateway requests by the providers' configured prices per 1,000 tokens, by route, client key, provider and model.",
		}, []string{"route", "key", "provider", "model"}),
		firstByte: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "ai_first_token_seconds",
			Help:    "Time from an ai_gateway request to the first byte of its response body (the first token of a stream), by route, provider, model and whether it streamed.",
			Buckets: firstTokenBuckets,
		}, []string{"route", "provider", "model", "stream"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ai_provider_failures_total",
			Help: "Provider attempts of ai_gateway requests that failed (connection error, timeout, 429, 5xx, busy) and passed the request to the next provider or failed it, by route and provider.",
		}, []string{"route", "provider"}),
	}
	a.models = map[string]struct{}{}
	reg.MustRegister(a.requests, a.tokens, a.cost, a.firstByte, a.failures)
	return a
}

// ObserveAI counts one ai_gateway request.
func (m *Metrics) ObserveAI(s *AISample) {
	a := m.aiM
	model := a.modelLabel(s)
	a.requests.WithLabelValues(s.Route, s.Key, s.Provider, model, s.Cache, strconv.Itoa(s.Status)).Inc()
	if s.Provider != "" && s.Cache != "hit" {
		a.tokens.WithLabelValues(s.Route, s.Key, s.Provider, model, "in").Add(float64(s.TokensIn))
		a.tokens.WithLabelValues(s.Route, s.Key, s.Provider, model, "out").Add(float64(s.TokensOut))
		a.cost.WithLabelValues(s.Route, s.Key, s.Provider, model).Add(s.Cost)
	}
	if s.FirstByte > 0 {
		a.firstByte.WithLabelValues(s.Route, s.Provider, model, strconv.FormatBool(s.Stream)).Observe(s.FirstByte.Seconds())
	}
	for _, p := range s.Failed {
		a.failures.WithLabelValues(s.Route, p).Inc()
	}
}

// appendAIValue appends an ai_* field of a record: empty strings and zeros without AI.
func appendAIValue(b []byte, f field, a *AIRecord, json bool) []byte {
	if a == nil {
		a = &AIRecord{}
	}
	switch f {
	case fAIFirstByte:
		return appendSeconds(b, int64(a.FirstByte))
	case fAITokensIn:
		return strconv.AppendInt(b, a.TokensIn, 10)
	case fAITokensOut:
		return strconv.AppendInt(b, a.TokensOut, 10)
	case fAICost:
		return strconv.AppendFloat(b, a.Cost, 'f', -1, 64)
	}
	if json {
		return appendJSONString(b, aiText(f, a))
	}
	return appendTextValue(b, aiText(f, a))
}

// aiText returns a string ai_* field.
func aiText(f field, a *AIRecord) string {
	if a == nil {
		return ""
	}
	switch f {
	case fAIKey:
		return a.Key
	case fAIProvider:
		return a.Provider
	case fAIModel:
		return a.Model
	case fAICache:
		return a.Cache
	}
	return ""
}
