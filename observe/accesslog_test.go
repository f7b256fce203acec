package observe

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
)

// syncBuffer is a goroutine-safe bytes.Buffer for the timer flush.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sampleRecord() *Record {
	return &Record{
		Time:           time.Date(2025, 3, 4, 5, 6, 7, 891_000_000, time.FixedZone("X", 3600)),
		RemoteAddr:     netip.MustParseAddrPort("[::ffff:192.0.2.7]:51234"),
		Method:         "GET",
		Host:           "example.com:8443",
		Path:           "/a\"b\\c\nd\x01e\x7f\xff\xfef/\u2028é",
		Query:          "q=1&r=2",
		Proto:          "HTTP/1.1",
		Status:         502,
		BytesSent:      1234,
		BytesReceived:  56,
		Duration:       1500 * time.Microsecond,
		UpstreamAddr:   "10.0.0.1:80",
		UpstreamStatus: 0,
		UpstreamWait:   2*time.Second + 250*time.Microsecond,
		Route:          "api",
		Attempts:       2,
		Error:          errors.New("connect refused: \"10.0.0.1:80\""),
		UserAgent:      "curl/8.0\t(x)",
		Referer:        "https://ref.example/",
		RequestID:      "abc-123",
		JA4:            "t13d1516h2_8daaf6152771_d8a2da3f94cd",
	}
}

func newTestLog(t *testing.T, cfg AccessLogConfig) (*AccessLog, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	cfg.Writer = buf
	a, err := NewAccessLog(cfg)
	if err != nil {
		t.Fatalf("NewAccessLog: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, buf
}

func TestAccessLogJSON(t *testing.T) {
	a, buf := newTestLog(t, AccessLogConfig{})
	a.Log(sampleRecord())
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("want exactly one JSON line, got %q", line)
	}
	if !utf8.ValidString(line) {
		t.Errorf("line is not valid UTF-8: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("line does not decode as JSON: %v\n%s", err, line)
	}
	want := map[string]any{
		"time":            "2025-03-04T04:06:07.891Z",
		"remote_addr":     "192.0.2.7:51234",
		"method":          "GET",
		"host":            "example.com:8443",
		"path":            "/a\"b\\c\nd\x01e\x7f\uFFFD\uFFFDf/\u2028é",
		"query":           "q=1&r=2",
		"proto":           "HTTP/1.1",
		"status":          502.0,
		"bytes_sent":      1234.0,
		"bytes_received":  56.0,
		"duration":        0.0015,
		"upstream_addr":   "10.0.0.1:80",
		"upstream_status": 0.0,
		"upstream_wait":   2.00025,
		"route":           "api",
		"attempts":        2.0,
		"error":           "connect refused: \"10.0.0.1:80\"",
		"user_agent":      "curl/8.0\t(x)",
		"referer":         "https://ref.example/",
		"request_id":      "abc-123",
		"tls_ja4":         "t13d1516h2_8daaf6152771_d8a2da3f94cd",
	}
	if len(got) != len(want) {
		t.Errorf("got %d fields, want %d: %s", len(got), len(want), line)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %#v, want %#v", k, got[k], v)
		}
	}
	// Field order is the documented default order (ai_* fields only on ai_gateway records).
	names := AccessLogFields()[:numBaseFields]
	last := -1
	for _, n := range names {
		i := strings.Index(line, `"`+n+`":`)
		if i <= last {
			t.Errorf("field %s out of order in %s", n, line)
		}
		last = i
	}
	// encoding/json escapes control characters; ours must not leave any raw.
	for _, c := range line[:len(line)-1] {
		if c < 0x20 {
			t.Fatalf("raw control character %#x in %q", c, line)
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "tab\there", "<>&", "\u2028\u2029",
		"日本語", "\xc3", "a\xed\xa0\x80b", "\"\\/"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("appendJSONString(%q) = %s: not JSON: %v", s, b, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if !utf8.ValidString(s) {
			// Each invalid byte becomes one U+FFFD, as encoding/json decodes it.
			var ref string
			raw, _ := json.Marshal(s)
			json.Unmarshal(raw, &ref)
			want = ref
		}
		if back != want {
			t.Errorf("appendJSONString(%q) decodes to %q, want %q", s, back, want)
		}
	}
}

func TestAccessLogFieldsAndText(t *testing.T) {
	a, buf := newTestLog(t, AccessLogConfig{Format: "text", Fields: []string{"status", "method", "path", "user_agent", "remote_addr", "duration", "query", "error"}})
	rec := sampleRecord()
	rec.Path = "/x y"
	rec.Query = ""
	rec.Error = nil
	a.Log(rec)
	a.Flush()
	want := `status=502 method=GET path="/x y" user_agent="curl/8.0\t(x)" remote_addr=192.0.2.7:51234 duration=0.001500 query="" error=""` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("text line:\n got %q\nwant %q", got, want)
	}

	a2, buf2 := newTestLog(t, AccessLogConfig{Fields: []string{"route", "status"}})
	a2.Log(rec)
	a2.Flush()
	if got, want := buf2.String(), `{"route":"api","status":502}`+"\n"; got != want {
		t.Errorf("json with selected fields = %q, want %q", got, want)
	}
}

func TestAccessLogConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  AccessLogConfig
		want string
	}{
		{AccessLogConfig{Fields: []string{"status", "bogus"}}, `unknown field "bogus"`},
		{AccessLogConfig{Fields: []string{"status", "status"}}, `field "status" listed twice`},
		{AccessLogConfig{Format: "xml"}, `format must be "json", "text", "combined" or "template", got "xml"`},
		{AccessLogConfig{Output: filepath.Join(t.TempDir(), "missing", "dir", "access.log")}, "open log file"},
	} {
		_, err := NewAccessLog(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewAccessLog(%+v) error = %v, want it to contain %q", tc.cfg, err, tc.want)
		}
	}
	if err := ValidateFields([]string{"time", "request_id"}); err != nil {
		t.Errorf("ValidateFields(valid) = %v", err)
	}
	if err := ValidateFields(nil); err != nil {
		t.Errorf("ValidateFields(nil) = %v", err)
	}
	if err := ValidateFields([]string{"Status"}); err == nil {
		t.Error("ValidateFields is case-sensitive: \"Status\" should be unknown")
	}
}

func TestAccessLogFlushesByItself(t *testing.T) {
	// In a synctest bubble the flush timer runs on the bubble's clock: "not yet written" is
	// checked at a known instant, not at whatever moment a busy machine resumes the test.
	synctest.Test(t, func(t *testing.T) {
		a, buf := newTestLog(t, AccessLogConfig{Fields: []string{"status"}})
		a.Log(&Record{Status: 200})
		synctest.Wait()
		if got := buf.String(); got != "" {
			t.Fatalf("line written before the flush interval: %q", got)
		}
		time.Sleep(accessLogFlushInterval)
		synctest.Wait()
		if got := buf.String(); got != `{"status":200}`+"\n" {
			t.Errorf("after the flush interval got %q", got)
		}
	})
}

func TestAccessLogFlushesWhenFull(t *testing.T) {
	a, buf := newTestLog(t, AccessLogConfig{Fields: []string{"path"}})
	rec := &Record{Path: "/" + strings.Repeat("p", 1000)}
	n := 0
	for len(buf.String()) == 0 && n < 100 {
		a.Log(rec)
		n++
	}
	lineLen := len(`{"path":""}`) + 1 + len(rec.Path)
	if want := accessLogBufferSize/lineLen + 1; n != want {
		t.Errorf("first write after %d lines, want %d (32 KiB buffer)", n, want)
	}
	// A line larger than the buffer goes straight out, after what was pending.
	big := &Record{Path: strings.Repeat("b", 40<<10)}
	a.Log(big)
	out := buf.String()
	if !strings.HasSuffix(out, `"}`+"\n") || strings.Count(out, "\n") != n+1 {
		t.Errorf("after a big line: %d lines written, want %d", strings.Count(out, "\n"), n+1)
	}
}

func TestAccessLogFileAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	a, err := NewAccessLog(AccessLogConfig{Output: path, Fields: []string{"path"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Log(&Record{Path: "/one"})
	// Rotate: move the file away, then Reopen writes the pending line to the old file and
	// creates a new one.
	rotated := filepath.Join(dir, "access.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	a.Log(&Record{Path: "/two"})
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	a.Log(&Record{Path: "/after-close"})
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	old, _ := os.ReadFile(rotated)
	cur, _ := os.ReadFile(path)
	if got, want := string(old), `{"path":"/one"}`+"\n"; got != want {
		t.Errorf("rotated file = %q, want %q", got, want)
	}
	if got, want := string(cur), `{"path":"/two"}`+"\n"; got != want {
		t.Errorf("new file = %q, want %q", got, want)
	}

	// Opening appends to an existing file.
	b, err := NewAccessLog(AccessLogConfig{Output: path, Fields: []string{"path"}})
	if err != nil {
		t.Fatal(err)
	}
	b.Log(&Record{Path: "/three"})
	b.Close()
	cur, _ = os.ReadFile(path)
	if got, want := string(cur), `{"path":"/two"}`+"\n"+`{"path":"/three"}`+"\n"; got != want {
		t.Errorf("after append = %q, want %q", got, want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestAccessLogWriteErrorReported(t *testing.T) {
	var logged syncBuffer
	a, err := NewAccessLog(AccessLogConfig{Writer: failWriter{}, Logger: slogTo(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Log(&Record{})
	a.Log(&Record{})
	if err := a.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Flush error = %v, want disk full", err)
	}
	if got := logged.String(); !strings.Contains(got, "access log write failed") || !strings.Contains(got, "lines_lost=2") {
		t.Errorf("error log = %q, want a report of 2 lost lines", got)
	}
}

func TestAccessLogConcurrent(t *testing.T) {
	a, buf := newTestLog(t, AccessLogConfig{Fields: []string{"request_id", "status"}})
	const workers, each = 4, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := &Record{RequestID: strings.Repeat("x", w+1), Status: 200}
			for range each {
				a.Log(rec)
			}
		}()
	}
	wg.Wait()
	a.Close()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != workers*each {
		t.Fatalf("got %d lines, want %d", len(lines), workers*each)
	}
	for _, l := range lines {
		var v struct {
			RequestID string `json:"request_id"`
			Status    int    `json:"status"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Status != 200 {
			t.Fatalf("garbled line %q: %v", l, err)
		}
	}
}

func BenchmarkAccessLog(b *testing.B) {
	a, err := NewAccessLog(AccessLogConfig{Writer: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rec := sampleRecord()
	rec.Error = nil
	rec.Path = "/api/v1/items/42"
	b.ReportAllocs()
	for b.Loop() {
		a.Log(rec)
	}
}

func BenchmarkAccessLogText(b *testing.B) {
	a, err := NewAccessLog(AccessLogConfig{Writer: io.Discard, Format: "text"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rec := sampleRecord()
	rec.Error = nil
	b.ReportAllocs()
	for b.Loop() {
		a.Log(rec)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func TestAccessLogAIFields(t *testing.T) {
	rec := sampleRecord()
	rec.AI = &AIRecord{Key: "team-a", Provider: "local", Model: "tiny", Cache: "miss", FirstByte: 1250 * time.Microsecond,
		TokensIn: 12, TokensOut: 30, Cost: 0.0042}
	a, buf := newTestLog(t, AccessLogConfig{})
	a.Log(rec)
	a.Log(sampleRecord())
	a.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := `"tls_ja4":"t13d1516h2_8daaf6152771_d8a2da3f94cd","ai_key":"team-a","ai_provider":"local","ai_model":"tiny","ai_cache":"miss","ai_first_byte":0.001250,"ai_tokens_in":12,"ai_tokens_out":30,"ai_cost":0.0042}`
	if len(lines) != 2 || !strings.HasSuffix(lines[0], want) || strings.Contains(lines[1], "ai_") {
		t.Errorf("got\n%s\nwant the first ending in %s and the second without ai_ fields", buf.String(), want)
	}
	a2, buf2 := newTestLog(t, AccessLogConfig{Format: "text", Fields: []string{"status", "ai_provider", "ai_tokens_out", "ai_cost"}})
	a2.Log(rec)
	a2.Log(sampleRecord())
	a2.Flush()
	if got := buf2.String(); got != "status=502 ai_provider=local ai_tokens_out=30 ai_cost=0.0042\nstatus=502 ai_provider=\"\" ai_tokens_out=0 ai_cost=0\n" {
		t.Errorf("text: %q", got)
	}
	a3, buf3 := newTestLog(t, AccessLogConfig{Format: "template", Template: "{ai_key} {ai_model} {ai_first_byte} {ai_tokens_in}"})
	a3.Log(rec)
	a3.Flush()
	if got := buf3.String(); got != "team-a tiny 0.001250 12\n" {
		t.Errorf("template: %q", got)
	}
}
