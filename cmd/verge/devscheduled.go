package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/verge-edge/verge/cron"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/worker"
)

// scheduledPath is where `verge dev --test-scheduled` runs the scheduled handler.
const scheduledPath = "/__scheduled"

// defaultTestCron is the expression a test run without cron= reports.
const defaultTestCron = "* * * * *"

func isScheduledPath(target string) bool {
	p, _, _ := strings.Cut(target, "?")
	return p == scheduledPath
}

// runScheduled answers GET /__scheduled?cron=EXPR[&time=RFC3339]: it runs the worker's
// scheduled handler once with that event (no claim: every request runs it) and answers 200
// when the handler succeeded, 500 with the failure otherwise. The expression need not be
// one of the worker's triggers, but must parse; the time defaults to the current minute.
func (d *devServer) runScheduled(s *proxy.Session, w *worker.Worker) error {
	h := &message.Header{}
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Cache-Control", "no-store")
	if s.Req.Method != "GET" && s.Req.Method != "POST" {
		s.Status = 405
		h.Add("Allow", "GET, POST")
		return s.Respond(405, h, []byte("use GET /__scheduled?cron=EXPR\n"))
	}
	_, rawQuery, _ := strings.Cut(s.Req.Target, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		s.Status = 400
		return s.Respond(400, h, []byte(fmt.Sprintf("bad query: %v\n", err)))
	}
	expr := q.Get("cron")
	if expr == "" {
		expr = defaultTestCron
	}
	if _, err := cron.Parse(expr); err != nil {
		s.Status = 400
		return s.Respond(400, h, []byte(fmt.Sprintf("cron %q: %v\n", expr, err)))
	}
	at := time.Now().UTC().Truncate(time.Minute)
	if t := q.Get("time"); t != "" {
		if at, err = time.Parse(time.RFC3339, t); err != nil {
			s.Status = 400
			return s.Respond(400, h, []byte("time: want RFC 3339, e.g. 2026-12-02T12:05:00Z\n"))
		}
	}
	_, err = w.Scheduled(s.Context(), worker.ScheduledEvent{Cron: expr, Time: at})
	if err != nil {
		s.Status = 500
		return s.Respond(500, h, []byte(fmt.Sprintf("scheduled handler failed: %v\n", err)))
	}
	s.Status = 200
	return s.Respond(200, h, []byte(fmt.Sprintf("ran scheduled event: cron %q at %s\n", expr, at.Format(time.RFC3339))))
}
