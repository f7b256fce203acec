package admin

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// Timeline is the source of the dashboard's charts: the last minutes of request, upstream,
// cache and worker rates (observe.Timeline, adapted by the binary). Without it GET /stats
// and GET /stats/events answer 501.
type Timeline interface {
	// Points returns the samples with a sequence number above after, oldest first, as a
	// value encoded as a JSON list, and the newest sequence number.
	Points(after uint64) (any, uint64)
	// Changed returns a channel closed when the next sample is taken.
	Changed() <-chan struct{}
	// Interval is the time between samples.
	Interval() time.Duration
}

// Limits of the live stream.
const (
	// MaxStreams bounds the GET /stats/events streams open at once; more get 503.
	MaxStreams = 32
	// streamKeepAlive is the time between comment lines on an idle stream, so proxies and
	// the client notice a dead connection.
	streamKeepAlive = 15 * time.Second
	// streamWriteTimeout bounds one write to a stream client.
	streamWriteTimeout = 10 * time.Second
)

//go:embed dashboard
var dashboardFS embed.FS

// dashboardFiles is the dashboard directory of dashboardFS.
var dashboardFiles = func() fs.FS {
	f, err := fs.Sub(dashboardFS, "dashboard")
	if err != nil {
		panic(err)
	}
	return f
}()

// dashboardCSP allows the page only its own scripts, styles and API: an injected <script>,
// inline handler or style does not run, and no other site may frame it (clickjacking).
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// isDashboardAsset reports whether path is one of the dashboard's static files, which need
// no token: they hold no data, and the page asks for the token before calling the API.
func isDashboardAsset(p string) bool {
	return p == "/dashboard" || strings.HasPrefix(p, "/dashboard/")
}

// dashboard serves the embedded pages.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	if !s.Dashboard {
		writeError(w, http.StatusNotFound, "the dashboard is disabled (admin.dashboard: false)")
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/dashboard")
	if name == "" {
		http.Redirect(w, r, "/dashboard/", http.StatusMovedPermanently)
		return
	}
	name = strings.TrimPrefix(path.Clean(name), "/")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(dashboardFiles, name)
	if err != nil {
		writeError(w, http.StatusNotFound, "no such file")
		return
	}
	h := w.Header()
	switch path.Ext(name) {
	case ".html":
		h.Set("Content-Type", "text/html; charset=utf-8")
	case ".js":
		h.Set("Content-Type", "text/javascript; charset=utf-8")
	case ".css":
		h.Set("Content-Type", "text/css; charset=utf-8")
	case ".svg":
		h.Set("Content-Type", "image/svg+xml")
	default:
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// root sends a browser to the dashboard.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if !s.Dashboard {
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	http.Redirect(w, r, "/dashboard/", http.StatusFound)
}

// statsBody is the answer of GET /stats and each event of GET /stats/events.
type statsBody struct {
	IntervalMillis int64  `json:"interval_ms"`
	Seq            uint64 `json:"seq"`
	Points         any    `json:"points"`
}

// statsAfter checks that the server keeps a timeline and reads the sequence number to
// continue after: ?after=N, else the Last-Event-ID an EventSource sends when it reconnects.
// It has answered when ok is false.
func (s *Server) statsAfter(w http.ResponseWriter, r *http.Request) (after uint64, ok bool) {
	if s.Timeline == nil {
		writeError(w, http.StatusNotImplemented, "this server keeps no timeline")
		return 0, false
	}
	v := r.URL.Query().Get("after")
	if v == "" {
		v = r.Header.Get("Last-Event-ID")
	}
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("after %q: want a sequence number", v))
		return 0, false
	}
	return n, true
}

// stats answers GET /stats: the kept samples, or those after ?after=N.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	after, ok := s.statsAfter(w, r)
	if !ok {
		return
	}
	pts, seq := s.Timeline.Points(after)
	writeJSON(w, http.StatusOK, statsBody{s.Timeline.Interval().Milliseconds(), seq, pts})
}

// statsEvents answers GET /stats/events: a text/event-stream with one "points" event per
// sample (id: its sequence number, data: a statsBody) until the client leaves or the
// server shuts down.
func (s *Server) statsEvents(w http.ResponseWriter, r *http.Request) {
	after, ok := s.statsAfter(w, r)
	if !ok {
		return
	}
	if s.streams.Add(1) > MaxStreams {
		s.streams.Add(-1)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many live streams (at most %d)", MaxStreams))
		return
	}
	defer s.streams.Add(-1)
	rc := http.NewResponseController(w)
	// The server's read timeout would end the stream: past it, the connection's read
	// deadline fires and net/http cancels the request.
	rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	closing := s.closingCh()
	keepAlive := time.NewTimer(streamKeepAlive)
	defer keepAlive.Stop()
	for {
		changed := s.Timeline.Changed()
		pts, seq := s.Timeline.Points(after)
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if seq > after {
			b, err := json.Marshal(statsBody{s.Timeline.Interval().Milliseconds(), seq, pts})
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "event: points\nid: %d\ndata: %s\n\n", seq, b); err != nil {
				return
			}
			after = seq
		} else if seq < after {
			// A number from before the server restarted its timeline: send every kept point
			// now, as to a new client (the dashboard then replaces what it had).
			after = 0
			continue
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-closing:
			return
		case <-changed:
		case <-keepAlive.C:
			rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
		}
		keepAlive.Reset(streamKeepAlive)
	}
}

// closingCh returns the channel closed when the server shuts down, which ends the streams.
func (s *Server) closingCh() <-chan struct{} {
	s.closeOnce.Do(func() { s.closing = make(chan struct{}) })
	return s.closing
}

// endStreams ends the live streams; http.Server.Shutdown calls it.
func (s *Server) endStreams() {
	ch := s.closingCh()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	select {
	case <-ch:
	default:
		close(s.closing)
	}
}
