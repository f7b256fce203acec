package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Handler returns the API's HTTP handler, with its guards applied in this order: the Host
// and Origin check (403), authentication (401), routing (JSON 404 and 405), and for
// state-changing endpoints the Content-Type check (415). Start and Serve use it, and it can
// be mounted on another server (then the Host check uses Addr and AllowedHosts). It is
// built once.
func (s *Server) Handler() http.Handler {
	s.once.Do(func() {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", s.healthz)
		mux.HandleFunc("GET /readyz", s.readyz)
		mux.HandleFunc("GET /config", s.getConfig)
		mux.HandleFunc("POST /config", accepts(configTypes, s.postConfig))
		mux.HandleFunc("POST /reload", accepts(jsonTypes, s.reload))
		mux.HandleFunc("GET /upstreams", s.upstreams)
		mux.HandleFunc("POST /upstreams/{group}/{address}/drain", accepts(jsonTypes, s.drain(true)))
		mux.HandleFunc("POST /upstreams/{group}/{address}/undrain", accepts(jsonTypes, s.drain(false)))
		mux.HandleFunc("GET /metrics", s.metrics)
		mux.HandleFunc("POST /cache/purge", accepts(jsonTypes, s.purge))
		mux.HandleFunc("GET /workers", s.workers)
		mux.HandleFunc("PUT /workers/{name}", accepts(wasmTypes, s.deployWorker))
		mux.HandleFunc("DELETE /workers/{name}/deployment", accepts(jsonTypes, s.dropDeployment))
		mux.HandleFunc("POST /workers/{name}/scheduled", accepts(jsonTypes, s.runScheduled))
		mux.HandleFunc("GET /cluster", s.clusterStatus)
		mux.HandleFunc("POST /config/validate", accepts(configTypes, s.validateConfig))
		mux.HandleFunc("GET /stats", s.stats)
		mux.HandleFunc("GET /stats/events", s.statsEvents)
		mux.HandleFunc("GET /kv", s.kvNamespaces)
		mux.HandleFunc("GET /kv/{namespace}", s.kvList)
		mux.HandleFunc("GET /kv/{namespace}/value", s.kvGet)
		mux.HandleFunc("PUT /kv/{namespace}/value", accepts(jsonTypes, s.kvPut))
		mux.HandleFunc("DELETE /kv/{namespace}/value", accepts(jsonTypes, s.kvDelete))
		mux.HandleFunc("GET /cache", s.cacheStatus)
		mux.HandleFunc("GET /cache/keys", s.cacheKeys)
		mux.HandleFunc("POST /workers/{name}/rollback", accepts(jsonTypes, s.rollbackWorker))
		mux.HandleFunc("GET /{$}", s.root)
		mux.HandleFunc("GET /dashboard", s.dashboard)
		mux.HandleFunc("GET /dashboard/", s.dashboard)
		s.handler = s.guard(s.authenticate(jsonErrors(mux)))
	})
	return s.handler
}

// jsonErrors answers the requests the mux has no handler for (unknown path: 404; known path,
// other method: 405 with Allow) with a JSON error body like every other error.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusNotFound
		}
		for _, k := range []string{"Allow", "Location"} {
			if v := rec.header.Values(k); len(v) > 0 {
				w.Header()[k] = v
			}
		}
		msg := "no such endpoint"
		if status == http.StatusMethodNotAllowed {
			msg = "method " + r.Method + " not allowed here"
		} else if status != http.StatusNotFound {
			msg = http.StatusText(status)
		}
		writeError(w, status, msg)
	})
}

// statusRecorder captures the status and header of the mux's own error answers; their
// plain-text body is dropped.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(p), nil
}
func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// authenticate requires the bearer token on every path but /healthz and the dashboard's
// static files, answering 401 with a
// WWW-Authenticate challenge (RFC 6750 section 3) otherwise.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		public := r.URL.Path == "/healthz" || (s.Dashboard && (r.URL.Path == "/" || isDashboardAsset(r.URL.Path)))
		if !public && !s.authorized(r) {
			challenge := `Bearer realm="verge-admin"`
			if r.Header.Get("Authorization") != "" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeJSON answers status with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{msg})
}

type statusBody struct {
	Status string `json:"status"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusBody{"ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.Controller.Ready() {
		writeJSON(w, http.StatusOK, statusBody{"ready"})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, statusBody{"not ready"})
}

func (s *Server) getConfig(w http.ResponseWriter, _ *http.Request) {
	cfg := s.Controller.CurrentConfig()
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(cfg)
}

// postConfig loads the YAML body as the new configuration.
func (s *Server) postConfig(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "configuration larger than the admin body limit")
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if len(body) == 0 {
		writeError(w, http.StatusBadRequest, "empty body: send the YAML configuration")
		return
	}
	if err := s.Controller.LoadConfig(r.Context(), body); err != nil {
		s.logger().Warn("admin: configuration refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.logger().Info("admin: configuration loaded", "remote", r.RemoteAddr, "bytes", len(body))
	writeJSON(w, http.StatusOK, statusBody{"loaded"})
}

// reload applies the configuration file again.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if err := s.Controller.Reload(r.Context()); err != nil {
		s.logger().Warn("admin: reload refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.logger().Info("admin: configuration reloaded", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, statusBody{"reloaded"})
}

func (s *Server) upstreams(w http.ResponseWriter, _ *http.Request) {
	list := s.Controller.Upstreams()
	if list == nil {
		list = []UpstreamStatus{}
	}
	writeJSON(w, http.StatusOK, list)
}

// drainBody answers a drain or undrain.
type drainBody struct {
	Group    string `json:"group"`
	Address  string `json:"address"`
	Draining bool   `json:"draining"`
}

func (s *Server) drain(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		group, addr := r.PathValue("group"), r.PathValue("address")
		if err := s.Controller.SetDrain(group, addr, on); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrNotFound) {
				status = http.StatusNotFound
			}
			writeError(w, status, err.Error())
			return
		}
		s.logger().Info("admin: backend drain changed", "remote", r.RemoteAddr, "group", group,
			"address", addr, "draining", on)
		writeJSON(w, http.StatusOK, drainBody{group, addr, on})
	}
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	s.Metrics.ServeHTTP(w, r)
}
