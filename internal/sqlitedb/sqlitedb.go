// Package sqlitedb opens the SQLite files behind Verge's embedded storage (KV namespaces and
// Durable Objects). It is the only importer of the SQLite driver, modernc.org/sqlite: a
// pure-Go translation of SQLite, chosen over a WebAssembly build of SQLite because it needs
// no second Wasm runtime compiling SQLite at start-up in every process, keeps storage
// independent of the worker sandbox's runtime and memory limits, and has the longest record
// as a database/sql driver with CGO_ENABLED=0.
//
// Every database is opened in WAL mode with synchronous=FULL: a transaction is durable
// (fsync'ed to the write-ahead log) when its commit returns, so a kill -9 or power loss
// after an acknowledged write does not lose it.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
)

// Options configure Open.
type Options struct {
	// MaxConns caps open connections. Zero means 1: a single connection, which serializes
	// every statement (what a Durable Object's database wants).
	MaxConns int
	// Sandbox, when non-nil, confines the statements run through its Run method (see
	// Sandbox); its policy is installed on every connection the database opens.
	Sandbox *Sandbox
	// ReadOnly opens an existing database for reading only: nothing is created (a missing
	// file is an error wrapping fs.ErrNotExist) and every write fails.
	ReadOnly bool
	// NoSync opens the database with synchronous=OFF: commits are not fsync'ed, so a crash
	// of the machine may lose or tear them. Only for files that are rebuilt from elsewhere
	// after a crash (a clustered Durable Object's copy, whose batches a replicated log holds).
	NoSync bool
}

// Open opens (creating when missing, with its directory, unless o.ReadOnly) the database
// file at path.
func Open(ctx context.Context, path string, o Options) (*sql.DB, error) {
	q := url.Values{}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("sqlite %s: %w", path, err)
		}
		q.Set("mode", "ro")
		for _, p := range []string{"busy_timeout(10000)", "query_only(1)"} {
			q.Add("_pragma", p)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("sqlite %s: %w", path, err)
		}
		sync := "synchronous(FULL)"
		if o.NoSync {
			sync = "synchronous(OFF)"
		}
		for _, p := range []string{"journal_mode(WAL)", sync, "busy_timeout(10000)", "foreign_keys(1)"} {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
	}
	var db *sql.DB
	if o.Sandbox != nil {
		// Defensive mode makes writable_schema and journal_mode=OFF no-ops even for a
		// statement that got past the authorizer; trusted_schema=OFF keeps functions with
		// side effects out of views and triggers.
		q.Set("_defensive", "1")
		q.Add("_pragma", "trusted_schema(0)")
		c, err := sqlite.NewConnector("file:" + path + "?" + q.Encode())
		if err != nil {
			return nil, fmt.Errorf("sqlite %s: %w", path, err)
		}
		db = sql.OpenDB(&sandboxConnector{inner: c, s: o.Sandbox})
	} else {
		var err error
		if db, err = sql.Open("sqlite", "file:"+path+"?"+q.Encode()); err != nil {
			return nil, fmt.Errorf("sqlite %s: %w", path, err)
		}
	}
	n := o.MaxConns
	if n <= 0 {
		n = 1
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	if mode != "wal" {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: journal mode is %q, want wal", path, mode)
	}
	return db, nil
}
