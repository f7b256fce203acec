// Command queuesink is the worker of TestRunQueueKill9: POST /send stores the lines of its
// body as queue messages (one SendBatch), and the queue handler reports each batch to the
// test's server (REPORT_URL): the deliveries, then, after acknowledging them, the acks.
package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		if r.Method != "POST" || r.Path() != "/send" {
			w.Write([]byte("ok"))
			return
		}
		body, _ := io.ReadAll(r.Body)
		var msgs []sdk.MessageSendRequest
		for _, line := range strings.Fields(string(body)) {
			msgs = append(msgs, sdk.MessageSendRequest{Body: []byte(line), ContentType: "text"})
		}
		if err := sdk.Queue("JOBS").SendBatch(msgs); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.WriteHeader(204)
	})
	sdk.HandleQueue(func(b *sdk.MessageBatch) error {
		var buf bytes.Buffer
		for _, m := range b.Messages {
			fmt.Fprintf(&buf, "%s %s %d\n", m.ID, m.Body, m.Attempts)
		}
		if err := report("/delivered", buf.Bytes()); err != nil {
			return err
		}
		if err := b.AckAll(); err != nil {
			return err
		}
		return report("/acked", buf.Bytes())
	})
}

func report(path string, body []byte) error {
	req, err := sdk.NewRequest("POST", sdk.Env("REPORT_URL")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := sdk.Fetch(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("report %s: status %d", path, resp.StatusCode)
	}
	return nil
}

func main() {}
