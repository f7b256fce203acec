package observe

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
)

func TestErrorLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "error.log")
	e, err := NewErrorLog(ErrorLogConfig{Level: "WARN", Format: "json", Output: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Logger.Info("hidden")
	e.Logger.Warn("shown", "upstream", "10.0.0.1:80")
	e.SetLevel(slog.LevelDebug)
	e.Logger.Debug("now shown")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Reopen(); err != nil {
		t.Fatal(err)
	}
	e.Logger.Error("after rotation")

	old, _ := os.ReadFile(path + ".1")
	lines := strings.Split(strings.TrimSpace(string(old)), "\n")
	if len(lines) != 2 {
		t.Fatalf("rotated file has %d lines, want 2: %q", len(lines), old)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" || rec["upstream"] != "10.0.0.1:80" {
		t.Errorf("first record = %v", rec)
	}
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(cur), `"msg":"after rotation"`) || strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file = %q, want one record after rotation", cur)
	}
}

func TestErrorLogConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  ErrorLogConfig
		want string
	}{
		{ErrorLogConfig{Level: "verbose"}, `unknown level "verbose"`},
		{ErrorLogConfig{Format: "xml"}, `format must be "text" or "json"`},
		{ErrorLogConfig{Output: filepath.Join(t.TempDir(), "no", "such", "dir")}, "open log file"},
	} {
		if _, err := NewErrorLog(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewErrorLog(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	e, err := NewErrorLog(ErrorLogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Logger.Enabled(t.Context(), slog.LevelInfo) || e.Logger.Enabled(t.Context(), slog.LevelDebug) {
		t.Error("default level is not info")
	}
	if err := e.Close(); err != nil {
		t.Errorf("Close on stderr = %v", err)
	}
}

func TestRecordFromSession(t *testing.T) {
	start := time.Now().Add(-50 * time.Millisecond)
	req := &message.Request{Method: "POST", Target: "/p/q?x=1&y", Authority: "h.example", Proto: message.HTTP2}
	req.Header.Add("user-agent", "ua/1")
	req.Header.Add("Referer", "https://r/")
	req.Header.Add("X-Request-ID", "rid")
	s := &proxy.Session{Req: req, Start: start, Peer: &upstream.Peer{Address: "10.0.0.9:8080"}, Attempts: 2,
		Status: 201, UpstreamStatus: 201, BytesReceived: 7, BytesSent: 9, UpstreamWait: time.Millisecond}
	var r Record
	r.Route = "stale"
	r.FromSession(s)
	want := Record{Time: start, Method: "POST", Host: "h.example", Path: "/p/q", Query: "x=1&y",
		Proto: message.HTTP2, Status: 201, BytesSent: 9, BytesReceived: 7, UpstreamAddr: "10.0.0.9:8080",
		UpstreamStatus: 201, UpstreamWait: time.Millisecond, Attempts: 2, UserAgent: "ua/1",
		Referer: "https://r/", RequestID: "rid"}
	if r.Duration < 50*time.Millisecond {
		t.Errorf("Duration = %v, want >= 50ms", r.Duration)
	}
	r.Duration = 0
	if r != want {
		t.Errorf("FromSession:\n got %+v\nwant %+v", r, want)
	}
}
