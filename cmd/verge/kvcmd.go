package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/kv"
)

const kvUsage = `Usage:
  verge kv get    [STORE] NAMESPACE KEY            print the value (exit 1 if absent)
  verge kv put    [STORE] NAMESPACE KEY [VALUE]    store VALUE, or standard input
                  [--metadata JSON] [--ttl DURATION] [--expiration UNIX]
  verge kv delete [STORE] NAMESPACE KEY
  verge kv list   [STORE] NAMESPACE [--prefix P] [--limit N] [--cursor C]
  verge kv namespaces [STORE]

STORE is one of:
  --data DIR        the data directory of "verge dev" (default .verge) or a config's worker_data
  -c FILE           a config: its cluster (the KV buckets in JetStream) when it has a cluster
                    section, else the files under its worker_data
  --nats URL        a NATS server of a cluster (JetStream), with --token T if it requires one
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
	file := fs.String("c", "", "config `file`: its cluster, or its worker_data")
	natsURL := fs.String("nats", "", "NATS server `URL` of a cluster")
	token := fs.String("token", "", "NATS `token` (with --nats)")
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
	ctx := context.Background()
	var store kvStore
	var where string
	if *natsURL != "" && *file != "" {
		fmt.Fprintf(stderr, "verge kv %s: give -c or --nats, not both\n", sub)
		return errUsage
	}
	if *natsURL != "" || *file != "" {
		st, w, closeFn, err := openKVTarget(ctx, *file, *natsURL, *token, data)
		if err != nil {
			return err
		}
		defer closeFn()
		store, where = st, w
	}
	if store == nil {
		s, err := kv.OpenSQLite(filepath.Join(*data, "kv"))
		if err != nil {
			return err
		}
		defer s.Close()
		store, where = sqliteKV{s}, filepath.Join(*data, "kv")
	}
	if sub == "namespaces" {
		names, err := store.Names(ctx)
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
			fmt.Fprintf(stderr, "verge kv %s: namespace %q not found in %s\n", sub, pos[0], where)
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

// kvStore is what verge kv needs of a store: SQLite files or a cluster's buckets.
type kvStore interface {
	Names(ctx context.Context) ([]string, error)
	Namespace(ctx context.Context, name string) (kv.Namespace, error)
	OpenExisting(ctx context.Context, name string) (kv.Namespace, error)
}

type sqliteKV struct{ *kv.SQLiteStore }

func (s sqliteKV) Names(context.Context) ([]string, error) { return s.SQLiteStore.Names() }

// kvConnectTimeout bounds connecting to the cluster.
const kvConnectTimeout = 10 * time.Second

// openKVTarget opens the store -c FILE or --nats URL names: the cluster's buckets, read
// and written directly in JetStream (no cache: a command sees the latest acknowledged
// write), or the SQLite files under the config's worker_data when it has no cluster.
func openKVTarget(ctx context.Context, file, natsURL, token string, data *string) (kvStore, string, func(), error) {
	o := cluster.Options{Token: token}
	replicas := 0
	if natsURL != "" {
		o.URLs = []string{natsURL}
	} else {
		cfg, err := config.Load(file)
		if err != nil {
			return nil, "", nil, err
		}
		if !cfg.Cluster.Enabled() {
			*data = cfg.WorkerData
			return nil, "", func() {}, nil
		}
		if o, err = clusterOptions(cfg, false); err != nil {
			return nil, "", nil, err
		}
		replicas = cfg.Cluster.Replicas
		if e := o.Embedded; e != nil {
			o.URLs, o.Token = []string{"nats://" + clientAddr(e.Listen)}, e.Token
			if replicas == 0 {
				seen := map[string]bool{e.ClusterListen: true}
				for _, r := range e.Routes {
					seen[r.Host] = true
				}
				replicas = min(3, len(seen))
			}
			o.Embedded = nil
		}
	}
	c, cancel := context.WithTimeout(ctx, kvConnectTimeout)
	defer cancel()
	cl, err := cluster.Dial(c, o)
	if err != nil {
		return nil, "", nil, err
	}
	if replicas == 0 {
		replicas = min(3, max(1, len(cl.Conn.Servers())))
	}
	s := kv.NewJetStreamStoreConn(cl.Conn, cl.JetStream, kv.JetStreamOptions{Direct: true, Replicas: replicas})
	return s, "the cluster (" + strings.Join(o.URLs, ",") + ")", func() { s.Close(); cl.Close() }, nil
}

// clientAddr turns a listen address into one to connect to: a wildcard host becomes
// loopback.
func clientAddr(listen string) string {
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if h == "" || h == "0.0.0.0" || h == "::" {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, p)
}

// parseInterspersed parses flags mixed with positional arguments and returns the latter.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	if probed(fs) {
		return nil, errProbed
	}
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
