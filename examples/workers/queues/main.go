// Command queues is a Verge worker that hands work to a queue and processes it in the
// background, in the manner of Cloudflare Queues:
//
//	POST /jobs        queues the request body as a job (?delay=SECONDS postpones it) and
//	                  answers 202 with the job's ID once the job is stored durably
//	GET  /jobs/ID     answers the job's state: queued, done (with its result) or failed
//
// The queue handler receives jobs in batches: it upper-cases each job's text and stores the
// result in the KV namespace RESULTS. A job whose text contains "fail" fails: the queue
// retries it (max_retries, retry_delay) and then moves it to the dead letter queue jobs-dlq,
// which the same worker consumes to record the failure.
//
//	workers:
//	  - name: queues
//	    package: ./examples/workers/queues
//	    kv: [{binding: RESULTS, namespace: queues-results}]
//	    queues:
//	      producers: [{binding: JOBS, queue: jobs}]
//	      consumers:
//	        - {queue: jobs, max_retries: 2, retry_delay: 1s, dead_letter_queue: jobs-dlq}
//	        - {queue: jobs-dlq}
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// job is a queued message's body.
type job struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		switch {
		case r.Method == "POST" && r.Path() == "/jobs":
			submit(w, r)
		case r.Method == "GET" && strings.HasPrefix(r.Path(), "/jobs/"):
			status(w, strings.TrimPrefix(r.Path(), "/jobs/"))
		default:
			sdk.ErrorResponse(w, "POST /jobs or GET /jobs/ID", 404)
		}
	})
	sdk.HandleQueue(func(b *sdk.MessageBatch) error {
		if b.Queue == "jobs-dlq" {
			return deadLetters(b)
		}
		return work(b)
	})
}

// submit queues the request body as a job.
func submit(w sdk.ResponseWriter, r *sdk.Request) {
	text, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 400)
		return
	}
	var id [8]byte
	rand.Read(id[:])
	j := job{ID: hex.EncodeToString(id[:]), Text: string(text)}
	body, _ := json.Marshal(j)
	o := &sdk.QueueSendOptions{ContentType: "json"}
	if s := r.URL().Query().Get("delay"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			sdk.ErrorResponse(w, "delay: want whole seconds", 400)
			return
		}
		o.Delay = time.Duration(n) * time.Second
	}
	if err := sdk.Queue("JOBS").Send(body, o); err != nil {
		sdk.ErrorResponse(w, err.Error(), 503)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(202)
	fmt.Fprintf(w, "{\"id\":%q}\n", j.ID)
}

// status answers a job's state.
func status(w sdk.ResponseWriter, id string) {
	v, ok, err := sdk.KV("RESULTS").Get("job:" + id)
	switch {
	case err != nil:
		sdk.ErrorResponse(w, err.Error(), 500)
	case !ok:
		w.Write([]byte("queued\n"))
	default:
		w.Write(append(v, '\n'))
	}
}

// work processes a batch of jobs: each one is acknowledged as soon as its result is
// stored, and one that fails is retried on its own, without holding back the others.
func work(b *sdk.MessageBatch) error {
	for _, m := range b.Messages {
		var j job
		if err := json.Unmarshal(m.Body, &j); err != nil {
			sdk.Log(sdk.LevelWarn, "dropping a malformed job %s: %v", m.ID, err)
			m.Ack()
			continue
		}
		if strings.Contains(j.Text, "fail") {
			sdk.Log(sdk.LevelInfo, "job %s failed (attempt %d)", j.ID, m.Attempts)
			m.Retry(-1) // the consumer's retry_delay
			continue
		}
		if err := sdk.KV("RESULTS").Put("job:"+j.ID, []byte("done: "+strings.ToUpper(j.Text))); err != nil {
			return err // the whole batch is retried, except what was acknowledged
		}
		if err := m.Ack(); err != nil {
			return err
		}
	}
	return nil
}

// deadLetters records the jobs whose retries were spent.
func deadLetters(b *sdk.MessageBatch) error {
	var errs []error
	for _, m := range b.Messages {
		var j job
		if json.Unmarshal(m.Body, &j) == nil {
			errs = append(errs, sdk.KV("RESULTS").Put("job:"+j.ID, []byte("failed: retries spent")))
		}
	}
	return errors.Join(errs...)
}

func main() {}
