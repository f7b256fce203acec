package sqlitedb

import (
	"context"
	"path/filepath"
	"testing"
)

// TestSynchronous: databases commit with synchronous=FULL (2) unless NoSync asks for OFF (0).
func TestSynchronous(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		noSync bool
		want   int
	}{{false, 2}, {true, 0}} {
		db, err := Open(ctx, filepath.Join(t.TempDir(), "x.sqlite"), Options{NoSync: c.noSync})
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if got != c.want {
			t.Errorf("NoSync %v: synchronous = %d, want %d", c.noSync, got, c.want)
		}
	}
}
