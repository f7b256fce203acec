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
