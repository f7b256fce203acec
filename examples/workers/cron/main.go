// Command cron is a Verge worker with a scheduled handler: each slot of its cron triggers
// is recorded in a Durable Object, and requests read the record.
//
//	GET /   answers {"runs": N, "slots": {"2026-12-02T12:05:00Z": 1, ...}, "last_cron": "..."}
//
// Every slot appears once with count 1: a slot runs once, on one node of a cluster, and is
// not run again after a restart. It expects a Durable Object binding LOG of class RunLog
// and cron triggers:
//
//	workers:
//	  - name: cron
//	    package: ./examples/workers/cron
//	    durable_objects: [{binding: LOG, class: RunLog}]
//	    triggers: {crons: ["*/5 * * * *", "0 3 * * mon"]}
//
// Under `verge dev --test-scheduled`, GET /__scheduled?cron=*/5+*+*+*+* runs the handler by
// hand; under `verge run`, POST /workers/cron/scheduled on the admin API does.
package main

import (
	"encoding/json"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// RunLog is the Durable Object that counts the runs of each slot.
type RunLog struct {
	state *sdk.DurableObjectState
}

// Fetch records a run (POST /record?slot=...&cron=...) or answers the record (GET /).
func (l *RunLog) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	st := l.state.Storage()
	if r.Method == "POST" {
		q := r.URL().Query()
		slot, cron := q.Get("slot"), q.Get("cron")
		n := 0
		if v, ok, err := st.Get("slot:" + slot); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		} else if ok {
			n, _ = strconv.Atoi(string(v))
		}
		err := st.PutMany([]sdk.StorageEntry{
			{Key: "slot:" + slot, Value: []byte(strconv.Itoa(n + 1))},
			{Key: "last_cron", Value: []byte(cron)},
		})
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.WriteHeader(204)
		return
	}
	entries, err := st.List(sdk.ListOptions{Prefix: "slot:"})
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	}
	out := struct {
		Runs     int            `json:"runs"`
		Slots    map[string]int `json:"slots"`
		LastCron string         `json:"last_cron"`
	}{Slots: map[string]int{}}
	for _, e := range entries {
		n, _ := strconv.Atoi(string(e.Value))
		out.Slots[strings.TrimPrefix(e.Key, "slot:")] = n
		out.Runs += n
	}
	if v, ok, _ := st.Get("last_cron"); ok {
		out.LastCron = string(v)
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func logObject() sdk.ObjectID { return sdk.DurableObject("LOG").IDFromName("log") }

func init() {
	sdk.DefineDurableObject("RunLog", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &RunLog{state: s}
	})
	sdk.HandleScheduled(func(ev sdk.ScheduledEvent) error {
		sdk.Log(sdk.LevelInfo, "scheduled: cron %q, slot %s", ev.Cron, ev.ScheduledTime.Format(time.RFC3339))
		req, err := sdk.NewRequest("POST", "https://log/record?slot="+ev.ScheduledTime.Format(time.RFC3339)+"&cron="+url.QueryEscape(ev.Cron), nil)
		if err != nil {
			return err
		}
		resp, err := logObject().Fetch(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			return &sdk.Error{Code: sdk.ErrInternal, Message: "recording the run: status " + strconv.Itoa(resp.StatusCode)}
		}
		return nil
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		req, err := sdk.NewRequest("GET", "https://log/", nil)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		resp, err := logObject().Fetch(req)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

func main() {}
