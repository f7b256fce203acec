package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// RPC to Durable Objects: a worker (or another object) calls a method of an object with
// typed arguments and gets a typed result or an *RPCError, instead of encoding its own
// requests for Fetch.
//
// An RPC call travels as an ordinary Durable Object request, so it needs nothing from the
// host beyond Fetch and crosses a cluster to the object's owner unchanged:
//
//	POST http://do.rpc/<method>
//	Verge-RPC: 1
//	Content-Type: application/json
//
//	<arguments as JSON>
//
// The object's SDK sends requests carrying the Verge-RPC header to the methods registered
// with HandleRPC, never to the class's Fetch; ObjectID.Fetch removes the header from the
// requests it sends, so only Call produces RPC requests (a worker forwarding a client's
// request to an object cannot be made to call a method). The answer carries Verge-RPC: 1
// too, with the result as JSON (status 200) or an error object {"code", "message"}
// (status 4xx or 5xx).

const (
	rpcHeader = "Verge-RPC"
	rpcURL    = "http://do.rpc/"
	// maxMethodName bounds a method name.
	maxMethodName = 128
)

// RPC error codes set by the SDK. A method may use codes of its own by returning an
// *RPCError.
const (
	// RPCCodeNoMethod: the object has no method of that name (errors.Is(err, ErrNoMethod)).
	RPCCodeNoMethod = "no_method"
	// RPCCodeBadArgs: the arguments did not decode into the method's argument type, or did
	// not encode on the caller.
	RPCCodeBadArgs = "bad_args"
	// RPCCodeBadResult: the result did not encode on the object or did not decode into the
	// caller's result type.
	RPCCodeBadResult = "bad_result"
	// RPCCodeError: the method returned a plain error; Message is its text.
	RPCCodeError = "error"
	// RPCCodePanic: the method panicked; Message is the panic value.
	RPCCodePanic = "panic"
	// RPCCodeProtocol: the object's answer was not an RPC answer (for instance, its class
	// was built with an SDK without RPC). A failed object invocation is the *Error of
	// ObjectID.Fetch instead.
	RPCCodeProtocol = "protocol"
)

// ErrNoMethod matches (errors.Is) the error of a call to a method the object does not have.
var ErrNoMethod = errors.New("verge sdk: no such rpc method")

// RPCError is the error result of a call: the method returned an error or panicked, the
// object has no such method, or the arguments or result did not convert. Failures to reach
// the object at all (no binding, an unknown ID, a host limit) are *Error instead.
type RPCError struct {
	// Code classifies the error: one of the RPCCode constants or a method's own code.
	Code string `json:"code"`
	// Message describes it; for RPCCodeError it is the method's error text.
	Message string `json:"message"`
}

func (e *RPCError) Error() string {
	if e.Code == "" || e.Code == RPCCodeError {
		return e.Message
	}
	return e.Code + ": " + e.Message
}

// Is makes errors.Is(err, ErrNoMethod) hold for an unknown method.
func (e *RPCError) Is(target error) bool { return target == ErrNoMethod && e.Code == RPCCodeNoMethod }

// rpcMethod decodes the arguments, runs a method and returns its encoded result.
type rpcMethod func(args []byte) ([]byte, error)

// validMethodName reports whether name may name a method: 1 to 128 letters, digits and
// "_.-" characters, so that it is a plain URL path segment.
func validMethodName(name string) bool {
	if name == "" || len(name) > maxMethodName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// HandleRPC registers fn as the method name of the object whose state is s. Call it from
// the constructor given to DefineDurableObject, once per method:
//
//	sdk.DefineDurableObject("Account", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
//		a := &Account{state: s}
//		sdk.HandleRPC(s, "deposit", a.Deposit) // func(DepositArgs) (Balance, error)
//		return a
//	})
//
// The arguments arrive JSON-decoded into A and the result leaves JSON-encoded, so both must
// be types encoding/json handles. Like a request to Fetch, a call runs alone in the object
// and its storage writes are durable before the caller gets the result; in addition a method
// runs in a nested transaction (Storage.Transaction), so when it returns an error or panics
// its writes are rolled back. A returned *RPCError reaches the caller with its code; any
// other error as RPCCodeError with the error's text; a panic as RPCCodePanic (the instance
// stays live). HandleRPC panics on a name that is not 1 to 128 letters, digits and "_.-",
// and on a name registered twice.
func HandleRPC[A, R any](s *DurableObjectState, name string, fn func(args A) (R, error)) {
	if !validMethodName(name) {
		panic(fmt.Sprintf("verge sdk: invalid rpc method name %q", name))
	}
	if _, dup := s.methods[name]; dup {
		panic(fmt.Sprintf("verge sdk: rpc method %q registered twice", name))
	}
	if s.methods == nil {
		s.methods = map[string]rpcMethod{}
	}
	s.methods[name] = func(raw []byte) ([]byte, error) {
		var args A
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, &RPCError{Code: RPCCodeBadArgs, Message: fmt.Sprintf("arguments of %s: %v", name, err)}
		}
		res, err := fn(args)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(res)
		if err != nil {
			return nil, &RPCError{Code: RPCCodeBadResult, Message: fmt.Sprintf("result of %s: %v", name, err)}
		}
		return out, nil
	}
}

// isRPC reports whether an incoming object request is an RPC call.
func isRPC(r *Request) bool { return r.Header.Get(rpcHeader) != "" }

// rpcMethodName returns the method name of an RPC request's URL.
func rpcMethodName(r *Request) string {
	p := r.Path()
	if len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

// callMethod runs the method of an RPC request: storage writes in a nested transaction that
// is rolled back on an error or a panic, a panic turned into an error.
func callMethod(s *DurableObjectState, name string, args []byte) (out []byte, err error) {
	m := s.methods[name]
	if m == nil {
		return nil, &RPCError{Code: RPCCodeNoMethod, Message: fmt.Sprintf("object has no rpc method %q", name)}
	}
	run := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &RPCError{Code: RPCCodePanic, Message: fmt.Sprintf("%s: %v", name, v)}
			}
		}()
		out, err = m(args)
		return err
	}
	if err := runInTxn(&s.storage, run); err != nil {
		return nil, err
	}
	return out, nil
}

// runInTxn runs a method in a nested transaction; tests without a host replace it.
var runInTxn = (*Storage).Transaction

// asRPCError is errors.As for *RPCError, written out so that the object's side of RPC does
// not link the reflection errors.As uses into every worker.
func asRPCError(err error) *RPCError {
	for depth := 0; err != nil && depth < 100; depth++ {
		switch e := err.(type) {
		case *RPCError:
			return e
		case interface{ Unwrap() []error }:
			for _, sub := range e.Unwrap() {
				if re := asRPCError(sub); re != nil {
					return re
				}
			}
			return nil
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return nil
		}
	}
	return nil
}

// rpcStatus maps an RPC error code to the status of its answer.
func rpcStatus(code string) int {
	switch code {
	case RPCCodeNoMethod:
		return 404
	case RPCCodeBadArgs:
		return 400
	case RPCCodeBadResult, RPCCodePanic:
		return 500
	case RPCCodeProtocol:
		return 502
	default:
		return 422
	}
}

// serveRPC answers an RPC request to the object with state s.
func serveRPC(s *DurableObjectState, w ResponseWriter, r *Request) {
	status, body := rpcAnswer(s, r)
	w.Header().Set(rpcHeader, "1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// rpcAnswer returns the status and body answering an RPC request.
func rpcAnswer(s *DurableObjectState, r *Request) (int, []byte) {
	fail := func(err error) (int, []byte) {
		re := asRPCError(err)
		if re == nil {
			re = &RPCError{Code: RPCCodeError, Message: err.Error()}
		}
		code := re.Code
		if code == "" {
			code = RPCCodeError
		}
		b := append([]byte(`{"code":`), jsonString(code)...)
		b = append(b, `,"message":`...)
		b = append(append(b, jsonString(re.Message)...), '}')
		return rpcStatus(code), b
	}
	if r.Method != "POST" {
		return fail(&RPCError{Code: RPCCodeProtocol, Message: "rpc call with method " + r.Method})
	}
	args, err := io.ReadAll(r.Body)
	if err != nil {
		return fail(err)
	}
	out, err := callMethod(s, rpcMethodName(r), args)
	if err != nil {
		return fail(err)
	}
	return 200, out
}

// jsonString returns s as a JSON string. The object's side of RPC encodes its errors with it
// rather than with encoding/json, so that a worker that uses no RPC method and no JSON
// helper does not link encoding/json (about half a megabyte of WebAssembly).
func jsonString(s string) []byte {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for _, c := range s { // invalid UTF-8 arrives as U+FFFD
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', byte(c))
		case c < 0x20 || c == 0x2028 || c == 0x2029:
			b = append(b, '\\', 'u', hex[c>>12&0xf], hex[c>>8&0xf], hex[c>>4&0xf], hex[c&0xf])
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return append(b, '"')
}

// newRPCRequest builds the request of a call.
func newRPCRequest(method string, args any) (*Request, error) {
	if !validMethodName(method) {
		return nil, &RPCError{Code: RPCCodeNoMethod, Message: fmt.Sprintf("invalid rpc method name %q", method)}
	}
	body, err := json.Marshal(args)
	if err != nil {
		return nil, &RPCError{Code: RPCCodeBadArgs, Message: fmt.Sprintf("arguments of %s: %v", method, err)}
	}
	r := &Request{Method: "POST", RawURL: rpcURL + method, Body: bytes.NewReader(body)}
	r.Header.Set(rpcHeader, "1")
	r.Header.Set("Content-Type", "application/json")
	return r, nil
}

// decodeRPCResponse turns the answer to a call into its result or error.
func decodeRPCResponse[R any](method string, resp *Response) (R, error) {
	var res R
	body, err := readBody(resp)
	if err != nil {
		return res, err
	}
	if resp.Header.Get(rpcHeader) != "1" {
		msg := "object answered " + method + " without rpc (status " + strconv.Itoa(resp.StatusCode) + ")"
		if len(body) > 0 {
			msg += ": " + string(body[:min(len(body), 200)])
		}
		return res, &RPCError{Code: RPCCodeProtocol, Message: msg}
	}
	if resp.StatusCode != 200 {
		re := &RPCError{}
		if err := json.Unmarshal(body, re); err != nil || re.Code == "" {
			return res, &RPCError{Code: RPCCodeProtocol, Message: fmt.Sprintf("malformed rpc error of %s (status %d)", method, resp.StatusCode)}
		}
		return res, re
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return res, &RPCError{Code: RPCCodeBadResult, Message: fmt.Sprintf("result of %s: %v", method, err)}
	}
	return res, nil
}

// Call calls method of the object id with args (JSON-encoded; nil sends null) and decodes
// its result into R:
//
//	bal, err := sdk.Call[Balance](ns.IDFromName("alice"), "deposit", DepositArgs{Amount: 5})
//
// The method's error arrives as an *RPCError (errors.Is(err, ErrNoMethod) for an unknown
// method); a failure to reach the object is the *Error of Fetch. Calls count and are
// limited like ObjectID.Fetch: one subrequest each, the same request and response sizes.
func Call[R any](id ObjectID, method string, args any) (R, error) {
	var zero R
	if id.err != nil {
		return zero, id.err
	}
	req, err := newRPCRequest(method, args)
	if err != nil {
		return zero, err
	}
	resp, err := objectFetch(id, req)
	if err != nil {
		return zero, err
	}
	return decodeRPCResponse[R](method, resp)
}
