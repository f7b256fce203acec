package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// recorder is a ResponseWriter that keeps what was written.
type recorder struct {
	header Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() *Header { return &w.header }
func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	return w.body.Write(p)
}

type addArgs struct{ A, B int }
type addResult struct{ Sum int }

// noHostTxn runs methods without a host: it records whether the transaction was rolled
// back the way Storage.Transaction does (on an error or a panic).
func noHostTxn(t *testing.T) *[]string {
	t.Helper()
	var log []string
	old := runInTxn
	runInTxn = func(_ *Storage, fn func() error) error {
		err := fn()
		if err != nil {
			log = append(log, "rollback")
		} else {
			log = append(log, "commit")
		}
		return err
	}
	t.Cleanup(func() { runInTxn = old })
	return &log
}

// roundTrip sends a call through the caller's encoding, the object's answer and the
// caller's decoding, as Call does through the host.
func roundTrip[R any](t *testing.T, s *DurableObjectState, method string, args any) (R, error) {
	t.Helper()
	req, err := newRPCRequest(method, args)
	if err != nil {
		var zero R
		return zero, err
	}
	if !isRPC(req) {
		t.Fatal("call request not marked as rpc")
	}
	w := &recorder{}
	serveRPC(s, w, req)
	resp := &Response{StatusCode: w.status, Header: w.header, Body: io.NopCloser(bytes.NewReader(w.body.Bytes()))}
	return decodeRPCResponse[R](method, resp)
}

func newTestObject() *DurableObjectState {
	s := &DurableObjectState{id: "x"}
	HandleRPC(s, "add", func(a addArgs) (addResult, error) { return addResult{a.A + a.B}, nil })
	HandleRPC(s, "fail", func(a addArgs) (addResult, error) { return addResult{}, errors.New("plain failure") })
	HandleRPC(s, "coded", func(a addArgs) (int, error) {
		return 0, &RPCError{Code: "overdraft", Message: "balance 3 is below 5"}
	})
	HandleRPC(s, "boom", func(a addArgs) (int, error) { panic("kaboom") })
	HandleRPC(s, "badresult", func(struct{}) (func(), error) { return func() {}, nil })
	return s
}

func TestRPCTypedResult(t *testing.T) {
	log := noHostTxn(t)
	s := newTestObject()
	res, err := roundTrip[addResult](t, s, "add", addArgs{2, 40})
	if err != nil || res.Sum != 42 {
		t.Fatalf("add = %+v, %v; want 42", res, err)
	}
	if strings.Join(*log, ",") != "commit" {
		t.Fatalf("transactions %v, want one commit", *log)
	}
}

func TestRPCErrors(t *testing.T) {
	log := noHostTxn(t)
	s := newTestObject()
	cases := []struct {
		method string
		args   any
		code   string
		msg    string
	}{
		{"fail", addArgs{}, RPCCodeError, "plain failure"},
		{"coded", addArgs{}, "overdraft", "overdraft: balance 3 is below 5"},
		{"boom", addArgs{}, RPCCodePanic, "panic: boom: kaboom"},
		{"nosuch", nil, RPCCodeNoMethod, `no_method: object has no rpc method "nosuch"`},
		{"add", "not an object", RPCCodeBadArgs, "bad_args: arguments of add: json"},
		{"badresult", nil, RPCCodeBadResult, "bad_result: result of badresult"},
		{"bad name/../x", nil, RPCCodeNoMethod, "no_method: invalid rpc method name"},
	}
	for _, c := range cases {
		_, err := roundTrip[addResult](t, s, c.method, c.args)
		var re *RPCError
		if !errors.As(err, &re) {
			t.Fatalf("%s: error %v (%T), want *RPCError", c.method, err, err)
		}
		if re.Code != c.code || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%s: error %q code %q, want code %q and text starting %q", c.method, err, re.Code, c.code, c.msg)
		}
		if (c.code == RPCCodeNoMethod) != errors.Is(err, ErrNoMethod) {
			t.Errorf("%s: errors.Is(ErrNoMethod) = %v", c.method, errors.Is(err, ErrNoMethod))
		}
	}
	// fail, coded, boom, add(bad args) and badresult rolled back; nosuch never ran one.
	if strings.Join(*log, ",") != "rollback,rollback,rollback,rollback,rollback" {
		t.Fatalf("transactions %v, want five rollbacks", *log)
	}
}

func TestRPCResultDecodeError(t *testing.T) {
	noHostTxn(t)
	s := newTestObject()
	_, err := roundTrip[string](t, s, "add", addArgs{1, 2})
	var re *RPCError
	if !errors.As(err, &re) || re.Code != RPCCodeBadResult {
		t.Fatalf("decode of an object into string: %v, want bad_result", err)
	}
}

func TestRPCProtocolErrors(t *testing.T) {
	// An answer without the marker: a failed instance's 500 or an object without RPC.
	_, err := decodeRPCResponse[int]("m", &Response{StatusCode: 500, Body: io.NopCloser(bytes.NewReader([]byte("worker failed")))})
	var re *RPCError
	if !errors.As(err, &re) || re.Code != RPCCodeProtocol || !strings.Contains(err.Error(), "(status 500): worker failed") {
		t.Fatalf("unmarked answer: %v", err)
	}
	h := Header{}
	h.Set(rpcHeader, "1")
	_, err = decodeRPCResponse[int]("m", &Response{StatusCode: 404, Header: h, Body: io.NopCloser(bytes.NewReader([]byte("<html>")))})
	if !errors.As(err, &re) || re.Code != RPCCodeProtocol {
		t.Fatalf("malformed error answer: %v", err)
	}
	// A non-POST request with the marker is refused without running a method.
	s := newTestObject()
	w := &recorder{}
	r := &Request{Method: "GET", RawURL: rpcURL + "add", Body: strings.NewReader("")}
	r.Header.Set(rpcHeader, "1")
	serveRPC(s, w, r)
	if w.status != 502 || w.header.Get(rpcHeader) != "1" {
		t.Fatalf("GET rpc: status %d header %q", w.status, w.header.Get(rpcHeader))
	}
}

func TestHandleRPCRegistrationPanics(t *testing.T) {
	for _, name := range []string{"", "a/b", "a b", strings.Repeat("m", maxMethodName+1), "add"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("HandleRPC(%q) did not panic", name)
				}
			}()
			HandleRPC(newTestObject(), name, func(int) (int, error) { return 0, nil })
		}()
	}
	HandleRPC(newTestObject(), strings.Repeat("m", maxMethodName), func(int) (int, error) { return 0, nil })
}

// TestFetchStripsRPCHeader: a request forwarded to ObjectID.Fetch cannot reach a method by
// carrying the marker header; the caller's request is left as it was.
func TestFetchStripsRPCHeader(t *testing.T) {
	r := &Request{Method: "POST", RawURL: rpcURL + "add"}
	r.Header.Add("verge-rpc", "1")
	r.Header.Add("X-Other", "y")
	var sent *Request
	old := objectFetch
	objectFetch = func(_ ObjectID, r *Request) (*Response, error) { sent = r; return &Response{StatusCode: 200}, nil }
	defer func() { objectFetch = old }()
	if _, err := (ObjectID{ns: "N", id: "i"}).Fetch(r); err != nil {
		t.Fatal(err)
	}
	if sent == nil || isRPC(sent) || sent.Header.Get("X-Other") != "y" {
		t.Fatalf("sent request header %+v, want the marker removed and the rest kept", sent)
	}
	if !isRPC(r) {
		t.Fatal("the caller's request was modified")
	}
}

func TestCallFailsWithoutHost(t *testing.T) {
	_, err := Call[int](ObjectID{ns: "N", id: "i"}, "add", addArgs{})
	var he *Error
	if !errors.As(err, &he) || he.Code != ErrUnavailable {
		t.Fatalf("Call without a host: %v, want *Error ErrUnavailable", err)
	}
	idErr := errors.New("bad id")
	if _, err := Call[int](ObjectID{err: idErr}, "add", nil); err != idErr {
		t.Fatalf("Call with a failed ID: %v", err)
	}
}

func TestReadJSON(t *testing.T) {
	var v struct{ N int }
	body := func(s string) *Request { return &Request{Method: "POST", Body: strings.NewReader(s)} }
	if err := ReadJSON(body(`{"N":7}`), &v); err != nil || v.N != 7 {
		t.Fatalf("ReadJSON = %v, %+v", err, v)
	}
	for _, c := range []struct {
		r      *Request
		status int
	}{
		{body(""), 400},
		{&Request{}, 400},
		{body(`{"N":`), 400},
		{body(`{"N":"x"}`), 400},
		{body(`{"N":1} {"N":2}`), 400},
		{body(`{"N":1,"pad":"` + strings.Repeat("a", MaxJSONBody) + `"}`), 413},
	} {
		err := ReadJSON(c.r, &v)
		var je *JSONError
		if !errors.As(err, &je) || je.Status != c.status {
			t.Errorf("ReadJSON: %v, want *JSONError %d", err, c.status)
			continue
		}
		w := &recorder{}
		WriteJSONError(w, err)
		if w.status != c.status || w.header.Get("Content-Type") != "application/json" || !strings.HasPrefix(w.body.String(), `{"error":`) {
			t.Errorf("WriteJSONError: %d %q %q", w.status, w.header.Get("Content-Type"), w.body.String())
		}
	}
	if err := ReadJSONLimit(body(`[1,2,3]`), new([]int), 6); err == nil {
		t.Fatal("ReadJSONLimit over the limit passed")
	}
	var ioErr = errors.New("read failed")
	err := ReadJSON(&Request{Body: io.MultiReader(strings.NewReader("{"), errReader{ioErr})}, &v)
	if !errors.Is(err, ioErr) {
		t.Fatalf("read error: %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestWriteJSONAndResponseJSON(t *testing.T) {
	w := &recorder{}
	if err := WriteJSON(w, 201, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if w.status != 201 || w.header.Get("Content-Type") != "application/json" || w.body.String() != "{\"n\":1}\n" {
		t.Fatalf("WriteJSON wrote %d %q %q", w.status, w.header.Get("Content-Type"), w.body.String())
	}
	resp := &Response{StatusCode: 201, Body: io.NopCloser(bytes.NewReader(w.body.Bytes()))}
	var m map[string]int
	if err := resp.JSON(&m); err != nil || m["n"] != 1 {
		t.Fatalf("Response.JSON = %v, %v", m, err)
	}
	if err := (&Response{StatusCode: 502, Body: io.NopCloser(bytes.NewReader([]byte("oops")))}).JSON(&m); err == nil || !strings.Contains(err.Error(), "status 502") {
		t.Fatalf("Response.JSON of a non-JSON body: %v", err)
	}
	w = &recorder{}
	if err := WriteJSON(w, 200, func() {}); err == nil || w.status != 500 {
		t.Fatalf("WriteJSON of a func: %v, status %d", err, w.status)
	}
	w = &recorder{}
	WriteJSONError(w, &RPCError{Code: "overdraft", Message: "no"})
	if w.status != 422 {
		t.Fatalf("WriteJSONError of an RPC error: %d", w.status)
	}
}

// TestRPCErrorEncoding: the object's hand-written JSON for errors decodes to the same text
// with encoding/json, whatever the message holds.
func TestRPCErrorEncoding(t *testing.T) {
	for _, msg := range []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\n\t\x1f", "bad utf8 \xff\xfe", "sep \u2028\u2029", "ünïcödé ✓"} {
		status, body := rpcAnswerFor(t, &RPCError{Code: "c\"x", Message: msg})
		var got RPCError
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%q: %s does not decode: %v", msg, body, err)
		}
		want := string([]rune(msg)) // each invalid byte becomes U+FFFD
		if got.Code != "c\"x" || got.Message != want || status != 422 {
			t.Errorf("%q: decoded %+v status %d, want message %q", msg, got, status, want)
		}
	}
	// An *RPCError wrapped or joined (a failed rollback joins its error) keeps its code.
	wrapped := fmt.Errorf("outer: %w", errors.Join(errors.New("rollback failed"), &RPCError{Code: "overdraft", Message: "m"}))
	if re := asRPCError(wrapped); re == nil || re.Code != "overdraft" {
		t.Fatalf("asRPCError(wrapped) = %v", re)
	}
	if re := asRPCError(errors.New("plain")); re != nil {
		t.Fatalf("asRPCError(plain) = %v", re)
	}
}

// rpcAnswerFor answers a call of a method that fails with err.
func rpcAnswerFor(t *testing.T, err error) (int, []byte) {
	t.Helper()
	noHostTxn(t)
	s := &DurableObjectState{}
	HandleRPC(s, "m", func(struct{}) (int, error) { return 0, err })
	r, _ := newRPCRequest("m", nil)
	return rpcAnswer(s, r)
}
