package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// checkBank drives examples/workers/rpc, whose worker calls the methods of an Account
// Durable Object with sdk.Call, and checks typed results, a method's own error (overdraft,
// its writes rolled back), a plain error, an unknown method, bad JSON, and that a client's
// Verge-RPC header forwarded through ObjectID.Fetch reaches the object's Fetch, not a method.
func checkBank(t *testing.T, addr string, logs fmt.Stringer) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	do := func(method, path, body string, hdr ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, logs)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d %q is not JSON: %v\n%s", method, path, resp.StatusCode, b, err, logs)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		return resp.StatusCode, m
	}
	expect := func(what string, code int, m map[string]any, wantCode int, want map[string]any) {
		t.Helper()
		if code != wantCode {
			t.Fatalf("%s: status %d %v, want %d\n%s", what, code, m, wantCode, logs)
		}
		for k, v := range want {
			if fmt.Sprint(m[k]) != fmt.Sprint(v) {
				t.Fatalf("%s: %s = %v in %v, want %v", what, k, m[k], m, v)
			}
		}
	}
	code, m := do("GET", "/accounts/alice", "")
	expect("new account", code, m, 200, map[string]any{"account": "alice", "balance": 0, "transactions": 0})
	code, m = do("POST", "/accounts/alice/deposit", `{"amount": 30}`)
	expect("deposit", code, m, 200, map[string]any{"balance": 30, "transactions": 1})
	code, m = do("POST", "/accounts/alice/withdraw", `{"amount": 12}`)
	expect("withdraw", code, m, 200, map[string]any{"balance": 18, "transactions": 2})

	// The method's *RPCError arrives typed, with its code; the transaction record the method
	// wrote before refusing is rolled back.
	code, m = do("POST", "/accounts/alice/withdraw", `{"amount": 100}`)
	expect("overdraft", code, m, 409, map[string]any{"code": "overdraft", "error": "overdraft: balance 18 is less than 100"})
	code, m = do("GET", "/accounts/alice", "")
	expect("after overdraft", code, m, 200, map[string]any{"balance": 18, "transactions": 2})

	// A plain error from a method: code "error" and its text.
	code, m = do("POST", "/accounts/alice/deposit", `{"amount": -1}`)
	expect("plain error", code, m, 422, map[string]any{"code": "error", "error": "amount must be positive"})

	// Unknown method: sdk.ErrNoMethod on the caller.
	code, m = do("POST", "/accounts/alice/steal", `{"amount": 5}`)
	expect("unknown method", code, m, 404, map[string]any{"code": "no_method", "error": `no_method: object has no rpc method "steal"`})

	// Arguments that do not fit the method's type: bad_args from the object.
	code, m = do("POST", "/accounts/alice/deposit", `{"amount": "lots"}`)
	expect("bad JSON for the worker", code, m, 400, map[string]any{"code": "bad_request"})
	code, m = do("POST", "/accounts/alice/balance", `[1]`)
	expect("bad arguments", code, m, 422, map[string]any{"code": "bad_args"})
	code, m = do("POST", "/accounts/alice/balance", `{}`)
	expect("generic call", code, m, 200, map[string]any{"balance": 18, "transactions": 2})
	code, m = do("POST", "/accounts/alice/deposit", `{"amount":`)
	expect("truncated JSON", code, m, 400, map[string]any{"code": "bad_request"})

	// A client's Verge-RPC header forwarded to the object does not make a method call.
	code, m = do("POST", "/raw/alice", "", "Verge-RPC", "1")
	expect("forwarded marker", code, m, 200, map[string]any{"fetch": "POST /balance", "verge-rpc": ""})

	// Objects are separate, and the state held.
	code, m = do("GET", "/accounts/bob", "")
	expect("other account", code, m, 200, map[string]any{"account": "bob", "balance": 0})
	code, m = do("GET", "/accounts/alice", "")
	expect("alice again", code, m, 200, map[string]any{"balance": 18, "transactions": 2})
}

// TestDevRPCBank runs the RPC example through `verge dev`.
func TestDevRPCBank(t *testing.T) {
	p := startDev(t, t.TempDir(), filepath.Join(testwasm.Root(), "examples", "workers", "rpc"))
	checkBank(t, p.addr, p.stderr)
}

// TestRunRPCBank runs the RPC example through `verge run` with a worker route.
func TestRunRPCBank(t *testing.T) {
	module := testwasm.BuildFile(t, "examples/workers/rpc")
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
access_log: {output: "off"}
pid_file: %q
routes: [{name: bank, worker: bank}]
workers:
  - name: bank
    module: %q
    durable_objects: [{binding: ACCOUNTS, class: Account}]
`, p.addr, p.pidFile, module)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		resp, err := c.Get("http://" + p.addr + "/accounts/probe")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	checkBank(t, p.addr, p.stderr)
}

// panicWorker's object has a method that writes and then panics, and one that reports the
// stored value and how many calls its live instance has served.
const panicWorker = `package main

import (
	"strconv"

	sdk "github.com/verge-edge/verge/sdk/go"
)

type obj struct {
	s     *sdk.DurableObjectState
	calls int
}

func (o *obj) Fetch(w sdk.ResponseWriter, r *sdk.Request) { sdk.ErrorResponse(w, "fetch", 404) }

func (o *obj) boom(struct{}) (int, error) {
	o.calls++
	o.s.Storage().Put("v", []byte("written before the panic"))
	var m map[string]int
	m["x"] = 1 // nil map: panics
	return 0, nil
}

func (o *obj) get(struct{}) (map[string]string, error) {
	o.calls++
	v, _, err := o.s.Storage().Get("v")
	return map[string]string{"v": string(v), "calls": strconv.Itoa(o.calls)}, err
}

func init() {
	sdk.DefineDurableObject("P", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		o := &obj{s: s}
		sdk.HandleRPC(s, "boom", o.boom)
		sdk.HandleRPC(s, "get", o.get)
		return o
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		id := sdk.DurableObject("P").IDFromName("one")
		res, err := sdk.Call[map[string]string](id, r.Path()[1:], nil)
		if err != nil {
			sdk.WriteJSONError(w, err)
			return
		}
		sdk.WriteJSON(w, 200, res)
	})
}

func main() {}
`

// TestDevRPCPanicKeepsInstance: a method that panics gives the caller a "panic" error, its
// storage write is rolled back, and the object's live instance goes on serving (its
// in-memory call count continues).
func TestDevRPCPanicKeepsInstance(t *testing.T) {
	// Inside the module, so the package can import the SDK; testdata keeps it out of ./...
	parent := filepath.Join(testwasm.Root(), "cmd", "verge", "testdata")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "rpcpanic-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(panicWorker), 0o644)
	os.WriteFile(filepath.Join(dir, "worker.yaml"), []byte("name: rpcpanic\ndurable_objects: [{binding: P, class: P}]\n"), 0o644)
	p := startDev(t, t.TempDir(), dir)
	c := &http.Client{Timeout: 30 * time.Second}
	if code, body, err := p.do(c, "GET", "/get", ""); code != 200 || body != `{"calls":"1","v":""}`+"\n" {
		t.Fatalf("get: %d %q %v\n%s", code, body, err, p.stderr)
	}
	code, body, err := p.do(c, "GET", "/boom", "")
	if code != 500 || !strings.Contains(body, `"error":"panic: boom: assignment to entry in nil map"`) {
		t.Fatalf("boom: %d %q %v, want 500 with the panic\n%s", code, body, err, p.stderr)
	}
	if code, body, err := p.do(c, "GET", "/get", ""); code != 200 || body != `{"calls":"3","v":""}`+"\n" {
		t.Fatalf("get after the panic: %d %q %v, want the same instance (calls 3) and no write\n%s", code, body, err, p.stderr)
	}
}
