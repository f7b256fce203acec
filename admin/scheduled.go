package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// ScheduledRunner is implemented by Controllers that fire workers' cron triggers. Without it
// POST /workers/{name}/scheduled answers 501.
type ScheduledRunner interface {
	// RunScheduled claims the slot of the worker's trigger cron that is due at at (the
	// latest slot at or before it) and runs the worker's scheduled handler for it, unless
	// the slot was claimed already (on this node or, in a cluster, on another). A worker
	// without that trigger is an error wrapping ErrNotFound.
	RunScheduled(ctx context.Context, worker, cron string, at time.Time) (ScheduledRun, error)
}

// ScheduledRequest is the body of POST /workers/{name}/scheduled.
type ScheduledRequest struct {
	// Cron is one of the worker's configured cron triggers, as written. Required.
	Cron string `json:"cron"`
	// Time picks the slot: the latest one at or before it. Empty means now.
	Time string `json:"time,omitempty"`
}

// ScheduledRun is the answer of POST /workers/{name}/scheduled.
type ScheduledRun struct {
	Worker string    `json:"worker"`
	Cron   string    `json:"cron"`
	Slot   time.Time `json:"slot"`
	// Fired is true when this call claimed the slot and started the handler; false when
	// the slot had been claimed already (it never runs twice).
	Fired bool `json:"fired"`
}

// ErrInvalidSlot is wrapped by ScheduledRunner errors about the request's slot (one in the
// future); the API answers 400.
var ErrInvalidSlot = errors.New("invalid slot")

// maxScheduledBody bounds the request body of POST /workers/{name}/scheduled.
const maxScheduledBody = 4 << 10

// runScheduled fires a slot of a worker's cron trigger by hand.
func (s *Server) runScheduled(w http.ResponseWriter, r *http.Request) {
	sr, ok := s.Controller.(ScheduledRunner)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server runs no cron triggers")
		return
	}
	var req ScheduledRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxScheduledBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request: "+err.Error()+` (send {"cron": "*/5 * * * *", "time": "2026-12-02T12:05:00Z"})`)
		return
	}
	if req.Cron == "" {
		writeError(w, http.StatusBadRequest, "cron is required: one of the worker's triggers.crons")
		return
	}
	at := time.Now()
	if req.Time != "" {
		t, err := time.Parse(time.RFC3339, req.Time)
		if err != nil {
			writeError(w, http.StatusBadRequest, "time: want RFC 3339, e.g. 2026-12-02T12:05:00Z")
			return
		}
		at = t
	}
	name := r.PathValue("name")
	res, err := sr.RunScheduled(r.Context(), name, req.Cron, at)
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, ErrInvalidSlot):
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	s.logger().Info("admin: cron slot", "remote", r.RemoteAddr, "worker", name, "cron", req.Cron, "slot", res.Slot, "fired", res.Fired)
	writeJSON(w, http.StatusOK, res)
}
