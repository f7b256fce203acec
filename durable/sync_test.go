package durable

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/verge-edge/verge/internal/sqlitedb"
)

// TestSyncCommitsMidTurn: writes before a Sync are durable when it returns (another
// connection to the object's database reads them while the turn still runs) and survive a
// later failure of the turn, which rolls back only the writes made after the Sync.
func TestSyncCommitsMidTurn(t *testing.T) {
	dir := t.TempDir()
	ns := newNS(t, dir, Options{})
	id := ns.IDFromName("x")
	ctx := context.Background()
	errLater := errors.New("later failure")
	err := ns.Do(ctx, id, func(tr *Turn) error {
		if err := tr.Sync(ctx); err != nil {
			t.Fatalf("sync without writes: %v", err)
		}
		if err := tr.Put([]Entry{{Key: "before", Value: []byte("1")}}); err != nil {
			return err
		}
		if err := tr.Sync(ctx); err != nil {
			return err
		}
		db, err := sqlitedb.Open(ctx, filepath.Join(dir, "test", id.String()+".sqlite"), sqlitedb.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		defer db.Close()
		var v string
		err = db.QueryRowContext(ctx, "SELECT value FROM _verge_kv WHERE key = ?", []byte("before")).Scan(&v)
		if err != nil || v != "1" {
			t.Errorf("after Sync another connection reads %q, %v; want \"1\"", v, err)
		}
		if err := tr.Put([]Entry{{Key: "after", Value: []byte("2")}}); err != nil {
			return err
		}
		return errLater
	})
	if !errors.Is(err, errLater) {
		t.Fatalf("Do: %v", err)
	}
	err = ns.Do(ctx, id, func(tr *Turn) error {
		vs, err := tr.Get([]string{"before", "after"})
		if err != nil {
			return err
		}
		if string(vs[0]) != "1" || vs[1] != nil {
			t.Errorf("got before=%q after=%q, want \"1\" and absent", vs[0], vs[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSyncInsideTransaction: Sync refuses while an explicit transaction is open.
func TestSyncInsideTransaction(t *testing.T) {
	ns := newNS(t, t.TempDir(), Options{})
	ctx := context.Background()
	err := ns.Do(ctx, ns.IDFromName("x"), func(tr *Turn) error {
		if err := tr.Begin(); err != nil {
			return err
		}
		if err := tr.Put([]Entry{{Key: "k", Value: []byte("v")}}); err != nil {
			return err
		}
		if err := tr.Sync(ctx); !errors.Is(err, ErrSyncInTransaction) {
			t.Errorf("Sync in a transaction: %v, want ErrSyncInTransaction", err)
		}
		if err := tr.Commit(); err != nil {
			return err
		}
		return tr.Sync(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
}
