package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// cronController is a fake Controller that fires cron slots.
type cronController struct {
	fakeController
	claimed map[string]bool
}

func (c *cronController) RunScheduled(_ context.Context, worker, cron string, at time.Time) (ScheduledRun, error) {
	if worker != "app" || cron != "*/5 * * * *" {
		return ScheduledRun{}, fmt.Errorf("worker %s has no cron trigger %q: %w", worker, cron, ErrNotFound)
	}
	if at.After(time.Now()) {
		return ScheduledRun{}, fmt.Errorf("slot in the future: %w", ErrInvalidSlot)
	}
	slot := at.UTC().Truncate(5 * time.Minute)
	r := ScheduledRun{Worker: worker, Cron: cron, Slot: slot, Fired: !c.claimed[slot.String()]}
	c.claimed[slot.String()] = true
	return r, nil
}

func TestRunScheduled(t *testing.T) {
	base := startServer(t, &Server{Controller: &cronController{claimed: map[string]bool{}}})
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post("/workers/app/scheduled", `{"cron": "*/5 * * * *", "time": "2026-01-01T00:07:00Z"}`)
	var r ScheduledRun
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || !r.Fired || r.Slot.Format(time.RFC3339) != "2026-01-01T00:05:00Z" {
		t.Fatalf("first: %d %s", code, body)
	}
	if code, body := post("/workers/app/scheduled", `{"cron": "*/5 * * * *", "time": "2026-01-01T00:06:00Z"}`); code != 200 || !strings.Contains(body, `"fired":false`) {
		t.Fatalf("again: %d %s", code, body)
	}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/workers/app/scheduled", `{"cron": "* * * * *"}`, 404},
		{"/workers/nope/scheduled", `{"cron": "*/5 * * * *"}`, 404},
		{"/workers/app/scheduled", `{"cron": "*/5 * * * *", "time": "2999-01-01T00:00:00Z"}`, 400},
		{"/workers/app/scheduled", `{"cron": "*/5 * * * *", "time": "yesterday"}`, 400},
		{"/workers/app/scheduled", `{}`, 400},
		{"/workers/app/scheduled", `{"cron": "*/5 * * * *", "extra": 1}`, 400},
		{"/workers/app/scheduled", `{"cron": "` + strings.Repeat("x", 8<<10) + `"}`, 400},
	} {
		if code, body := post(c.path, c.body); code != c.want {
			t.Errorf("POST %s %.40s: %d %s, want %d", c.path, c.body, code, body, c.want)
		}
	}
	// A controller without cron triggers.
	base = startServer(t, &Server{Controller: &fakeController{}})
	if code, body := post("/workers/app/scheduled", `{"cron": "*/5 * * * *"}`); code != 501 {
		t.Fatalf("without ScheduledRunner: %d %s", code, body)
	}
}
