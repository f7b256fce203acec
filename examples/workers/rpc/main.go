// Command rpc is a Verge worker that calls methods of a Durable Object with typed arguments
// and results (sdk.HandleRPC and sdk.Call) instead of encoding requests for Fetch. Each
// account is one object:
//
//	GET  /accounts/NAME                 {"account":"NAME","balance":N,"transactions":T}
//	POST /accounts/NAME/deposit  {"amount":N}   the new balance, as above
//	POST /accounts/NAME/withdraw {"amount":N}   the new balance; 409 {"code":"overdraft",...}
//	POST /accounts/NAME/METHOD   any JSON       calls METHOD with the body as arguments
//	GET  /raw/NAME                              the object's Fetch (not a method)
//
// Errors are JSON {"code": "...", "error": "..."}: 400 for a bad body, 404 for an unknown
// method (sdk.ErrNoMethod), 409 for an overdraft. It expects the binding ACCOUNTS, a Durable
// Object namespace of class Account:
//
//	workers:
//	  - name: bank
//	    package: ./examples/workers/rpc
//	    durable_objects: [{binding: ACCOUNTS, class: Account}]
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// Amount is the argument of deposit and withdraw.
type Amount struct {
	Amount int64 `json:"amount"`
}

// Balance is the result of every method.
type Balance struct {
	Balance      int64 `json:"balance"`
	Transactions int64 `json:"transactions"`
}

// Account is the Durable Object class: one balance and a numbered list of transactions per
// object, in its storage.
type Account struct {
	state *sdk.DurableObjectState
}

func (a *Account) load() (Balance, error) {
	var b Balance
	m, err := a.state.Storage().GetMany([]string{"balance", "transactions"})
	if err != nil {
		return b, err
	}
	b.Balance, _ = strconv.ParseInt(string(m["balance"]), 10, 64)
	b.Transactions, _ = strconv.ParseInt(string(m["transactions"]), 10, 64)
	return b, nil
}

// apply records a transaction of delta and then the new balance. The record is written
// first: when the balance would go negative the method returns an error, and the SDK rolls
// back the method's writes, the record included.
func (a *Account) apply(delta int64) (Balance, error) {
	b, err := a.load()
	if err != nil {
		return b, err
	}
	b.Transactions++
	st := a.state.Storage()
	if err := st.PutMany([]sdk.StorageEntry{
		{Key: fmt.Sprintf("tx:%020d", b.Transactions), Value: []byte(strconv.FormatInt(delta, 10))},
		{Key: "transactions", Value: []byte(strconv.FormatInt(b.Transactions, 10))},
	}); err != nil {
		return Balance{}, err
	}
	b.Balance += delta
	if b.Balance < 0 {
		return Balance{}, &sdk.RPCError{Code: "overdraft", Message: fmt.Sprintf("balance %d is less than %d", b.Balance-delta, -delta)}
	}
	return b, st.Put("balance", []byte(strconv.FormatInt(b.Balance, 10)))
}

// Deposit adds a positive amount.
func (a *Account) Deposit(arg Amount) (Balance, error) {
	if arg.Amount <= 0 {
		return Balance{}, errors.New("amount must be positive")
	}
	return a.apply(arg.Amount)
}

// Withdraw takes a positive amount, refusing to overdraw the account.
func (a *Account) Withdraw(arg Amount) (Balance, error) {
	if arg.Amount <= 0 {
		return Balance{}, errors.New("amount must be positive")
	}
	return a.apply(-arg.Amount)
}

// Balance answers the balance; it takes no arguments.
func (a *Account) Balance(struct{}) (Balance, error) { return a.load() }

// Fetch answers requests that are not method calls: RPC calls never arrive here.
func (a *Account) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	sdk.WriteJSON(w, 200, map[string]string{"fetch": r.Method + " " + r.Path(), "verge-rpc": r.Header.Get("Verge-RPC")})
}

func init() {
	sdk.DefineDurableObject("Account", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		a := &Account{state: s}
		sdk.HandleRPC(s, "deposit", a.Deposit)
		sdk.HandleRPC(s, "withdraw", a.Withdraw)
		sdk.HandleRPC(s, "balance", a.Balance)
		return a
	})
	sdk.Serve(serve)
}

// fail answers err as JSON with a status fitting its kind.
func fail(w sdk.ResponseWriter, err error) {
	var re *sdk.RPCError
	var je *sdk.JSONError
	status, code := 500, "internal"
	switch {
	case errors.As(err, &je):
		status, code = je.Status, "bad_request"
	case errors.As(err, &re):
		code = re.Code
		switch {
		case errors.Is(err, sdk.ErrNoMethod):
			status = 404
		case re.Code == "overdraft":
			status = 409
		default:
			status = 422
		}
	}
	sdk.WriteJSON(w, status, map[string]string{"code": code, "error": err.Error()})
}

func serve(w sdk.ResponseWriter, r *sdk.Request) {
	parts := strings.Split(strings.Trim(r.Path(), "/"), "/")
	if len(parts) < 2 || parts[1] == "" {
		sdk.ErrorResponse(w, "not found", 404)
		return
	}
	name := parts[1]
	id := sdk.DurableObject("ACCOUNTS").IDFromName(name)
	switch {
	case parts[0] == "raw" && len(parts) == 2:
		// Forwards the client's method and header fields, as a proxying worker would; a
		// Verge-RPC header among them does not turn this into a method call.
		req := &sdk.Request{Method: r.Method, RawURL: "http://do.rpc/balance", Header: r.Header}
		resp, err := id.Fetch(req)
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	case parts[0] != "accounts":
		sdk.ErrorResponse(w, "not found", 404)
	case len(parts) == 2 && r.Method == "GET":
		b, err := sdk.Call[Balance](id, "balance", nil)
		answer(w, name, b, err)
	case len(parts) == 3 && r.Method == "POST" && (parts[2] == "deposit" || parts[2] == "withdraw"):
		var arg Amount
		if err := sdk.ReadJSON(r, &arg); err != nil {
			fail(w, err)
			return
		}
		b, err := sdk.Call[Balance](id, parts[2], arg)
		answer(w, name, b, err)
	case len(parts) == 3 && r.Method == "POST":
		var arg json.RawMessage
		if err := sdk.ReadJSON(r, &arg); err != nil {
			fail(w, err)
			return
		}
		res, err := sdk.Call[json.RawMessage](id, parts[2], arg)
		if err != nil {
			fail(w, err)
			return
		}
		sdk.WriteJSON(w, 200, res)
	default:
		sdk.ErrorResponse(w, "not found", 404)
	}
}

func answer(w sdk.ResponseWriter, name string, b Balance, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	sdk.WriteJSON(w, 200, struct {
		Account string `json:"account"`
		Balance
	}{name, b})
}

func main() {}
