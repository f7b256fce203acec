package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/verge-edge/verge/kv"
)

const kvUsage = `Usage:
  verge kv get    [--data DIR] NAMESPACE KEY            print the value (exit 1 if absent)
  verge kv put    [--data DIR] NAMESPACE KEY [VALUE]    store VALUE, or standard input
                  [--metadata JSON] [--ttl DURATION] [--expiration UNIX]
  verge kv delete [--data DIR] NAMESPACE KEY
  verge kv list   [--data DIR] NAMESPACE [--prefix P] [--limit N] [--cursor C]
  verge kv namespaces [--data DIR]

DIR is the data directory of "verge dev" (default .verge) or a config's worker_data.
`

// cmdKV reads and changes local KV namespaces.
func cmdKV(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, kvUsage)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	sub := args[0]
	fs := flag.NewFlagSet("kv "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, kvUsage) }
	data := fs.String("data", ".verge", "data `directory`")
	prefix := fs.String("prefix", "", "list: key `prefix`")
	limit := fs.Int("limit", 0, "list: keys per page, 1..1000 (default 1000)")
	cursor := fs.String("cursor", "", "list: continue from this `cursor`")
	metadata := fs.String("metadata", "", "put: metadata `JSON` stored with the value")
	ttl := fs.Duration("ttl", 0, "put: time to live, at least 60s")
	expiration := fs.Int64("expiration", 0, "put: expiration as Unix `seconds`")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string][2]int{"get": {2, 2}, "put": {2, 3}, "delete": {2, 2}, "list": {1, 1}, "namespaces": {0, 0}}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "verge kv: unknown command %q\n\n%s", sub, kvUsage)
		return errUsage
	}
	if len(pos) < n[0] || len(pos) > n[1] {
		fmt.Fprintf(stderr, "verge kv %s: wrong number of arguments\n\n%s", sub, kvUsage)
		return errUsage
	}
	store, err := kv.OpenSQLite(filepath.Join(*data, "kv"))
	if err != nil {
		return err
	}
	defer store.Close()
	ctx := context.Background()
	if sub == "namespaces" {
		names, err := store.Names()
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
		return nil
	}
	// Only put creates a namespace; the other commands open an existing one, get and list
	// read-only, so that looking creates nothing.
	var ns kv.Namespace
	if sub != "put" {
		ns, err = store.OpenExisting(ctx, pos[0])
		if errors.Is(err, kv.ErrNamespaceNotFound) {
			fmt.Fprintf(stderr, "verge kv %s: namespace %q not found in %s\n", sub, pos[0], filepath.Join(*data, "kv"))
			return exitError(1)
		}
	}
	if sub == "put" || sub == "delete" {
		ns, err = store.Namespace(ctx, pos[0])
	}
	if err != nil {
		return err
	}
	switch sub {
	case "get":
		e, err := ns.Get(ctx, pos[1])
		if err != nil {
			return err
		}
		if e == nil {
			fmt.Fprintf(stderr, "verge kv get: key %q not found in %s\n", pos[1], pos[0])
			return exitError(1)
		}
		_, err = stdout.Write(e.Value)
		return err
	case "put":
		var value []byte
		if len(pos) == 3 {
			value = []byte(pos[2])
		} else if value, err = io.ReadAll(io.LimitReader(stdin, kv.MaxValueBytes+1)); err != nil {
			return err
		}
		o := kv.PutOptions{ExpirationTTL: *ttl}
		if *metadata != "" {
			if !json.Valid([]byte(*metadata)) {
				fmt.Fprintln(stderr, "verge kv put: --metadata is not valid JSON")
				return errUsage
			}
			o.Metadata = []byte(*metadata)
		}
		if *expiration != 0 {
			o.Expiration = time.Unix(*expiration, 0)
		}
		return ns.Put(ctx, pos[1], value, o)
	case "delete":
		return ns.Delete(ctx, pos[1])
	}
	res, err := ns.List(ctx, kv.ListOptions{Prefix: *prefix, Limit: *limit, Cursor: *cursor})
	if err != nil {
		return err
	}
	type key struct {
		Name       string          `json:"name"`
		Expiration int64           `json:"expiration,omitempty"`
		Metadata   json.RawMessage `json:"metadata,omitempty"`
	}
	out := struct {
		Keys         []key  `json:"keys"`
		ListComplete bool   `json:"list_complete"`
		Cursor       string `json:"cursor,omitempty"`
	}{Keys: []key{}, ListComplete: res.ListComplete, Cursor: res.Cursor}
	for _, k := range res.Keys {
		kk := key{Name: k.Name}
		if !k.Expiration.IsZero() {
			kk.Expiration = k.Expiration.Unix()
		}
		if k.Metadata != nil && json.Valid(k.Metadata) {
			kk.Metadata = k.Metadata
		} else if k.Metadata != nil {
			kk.Metadata, _ = json.Marshal(string(k.Metadata))
		}
		out.Keys = append(out.Keys, kk)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// parseInterspersed parses flags mixed with positional arguments and returns the latter.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
