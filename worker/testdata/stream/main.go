// Command stream is a test worker for streamed responses: flushes, subrequest bodies passed
// through, and a Durable Object that streams its response.
//
//	/flush?wait=URL   writes "a", flushes, fetches URL (a test endpoint that answers once
//	                  the client has received "a"), then writes "b"
//	/proxy?url=URL    passes the response of URL through with io.Copy
//	/do?wait=URL      passes through the response of the Streamer object, which does what
//	                  /flush does after a storage write (p=/tx: inside a transaction)
//	/do-close?o=NAME  reads one byte of the object's 2 MiB response, then closes it
//	/handles?url=URL  opens bodies of URL without reading them until the host refuses one
//	/service?p=PATH   passes through its own response to PATH, called through the service
//	                  binding SELF
package main

import (
	"errors"
	"io"
	"strconv"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// streamer is a Durable Object class that writes, flushes and writes again.
type streamer struct{ st *sdk.Storage }

func (s *streamer) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	if r.Path() == "/tx" {
		// A flush inside a transaction: its bytes must wait for the transaction's end.
		err := s.st.Transaction(func() error {
			if err := s.st.Put("tx", []byte("1")); err != nil {
				return err
			}
			w.Write([]byte("a"))
			w.(sdk.Flusher).Flush()
			if !waitFor(w, r.URL().Query().Get("wait")) {
				return errors.New("wait failed")
			}
			return nil
		})
		if err != nil {
			return
		}
		w.Write([]byte("b"))
		return
	}
	var n int
	if v, ok, _ := s.st.Get("n"); ok {
		n, _ = strconv.Atoi(string(v))
	}
	n++
	if err := s.st.Put("n", []byte(strconv.Itoa(n))); err != nil {
		sdk.ErrorResponse(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Count", strconv.Itoa(n))
	w.Write([]byte("a"))
	w.(sdk.Flusher).Flush()
	if r.Path() == "/big" {
		// More than the host lets wait unread: blocks unless the caller reads or closes.
		chunk := make([]byte, 32<<10)
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		return
	}
	if wait := r.URL().Query().Get("wait"); wait != "" {
		if !waitFor(w, wait) {
			return
		}
	}
	w.Write([]byte("b"))
}

// waitFor fetches url and reads its body; false (with an error written) when that failed
// or did not answer 200.
func waitFor(w sdk.ResponseWriter, url string) bool {
	req, err := sdk.NewRequest("GET", url, nil)
	if err == nil {
		var resp *sdk.Response
		if resp, err = sdk.Fetch(req); err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != 200 {
				err = errors.New("status " + strconv.Itoa(resp.StatusCode) + ": " + string(b))
			}
		}
	}
	if err != nil {
		w.Write([]byte("wait failed: " + err.Error()))
		return false
	}
	return true
}

func init() {
	sdk.DefineDurableObject("Streamer", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &streamer{st: s.Storage()}
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		q := r.URL().Query()
		switch r.Path() {
		case "/flush":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("a"))
			w.(sdk.Flusher).Flush()
			if !waitFor(w, q.Get("wait")) {
				return
			}
			w.Write([]byte("b"))
		case "/service":
			// Passes through the response of this worker's own p, called through the
			// service binding SELF.
			req, _ := sdk.NewRequest("GET", "https://svc.internal"+q.Get("p"), nil)
			resp, err := sdk.Service("SELF").Fetch(req)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			w.WriteHeader(resp.StatusCode)
			if _, err := io.Copy(w, resp.Body); err != nil {
				panic("passing the body through: " + err.Error())
			}
		case "/proxy":
			req, _ := sdk.NewRequest("GET", q.Get("url"), nil)
			resp, err := sdk.Fetch(req)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			if _, err := io.Copy(w, resp.Body); err != nil {
				panic("passing the body through: " + err.Error())
			}
		case "/do":
			path := q.Get("p")
			if path == "" {
				path = "/stream"
			}
			url := "http://do" + path
			if wait := q.Get("wait"); wait != "" {
				url += "?wait=" + wait
			}
			req, _ := sdk.NewRequest("GET", url, nil)
			resp, err := sdk.DurableObject("STREAM").IDFromName(q.Get("o")).Fetch(req)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			w.Header().Set("X-Count", resp.Header.Get("X-Count"))
			w.WriteHeader(resp.StatusCode)
			if _, err := io.Copy(w, resp.Body); err != nil {
				panic("passing the object's body through: " + err.Error())
			}
		case "/do-close":
			// Reads the first byte of the object's 2 MiB response and closes the body.
			req, _ := sdk.NewRequest("GET", "http://do/big", nil)
			resp, err := sdk.DurableObject("STREAM").IDFromName(q.Get("o")).Fetch(req)
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			first := make([]byte, 1)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
			resp.Body.Close()
			w.Write([]byte("closed after " + string(first) + " count " + resp.Header.Get("X-Count")))
		case "/handles":
			n := 0
			for {
				req, _ := sdk.NewRequest("GET", q.Get("url"), nil)
				_, err := sdk.Fetch(req)
				if err != nil {
					if e, ok := err.(*sdk.Error); ok && e.Code == sdk.ErrLimit {
						w.Write([]byte("limit after " + strconv.Itoa(n)))
						return
					}
					sdk.ErrorResponse(w, err.Error(), 502)
					return
				}
				n++
			}
		default:
			sdk.ErrorResponse(w, "not found", 404)
		}
	})
}

func main() {}
