package acme

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
)

func TestKeyEncoding(t *testing.T) {
	for _, k := range []string{
		"certificates/127.0.0.1:14000-dir/a.verge.test/a.verge.test.crt",
		"certificates/acme-v02.api.letsencrypt.org-directory/wildcard_.example.com/wildcard_.example.com.key",
		"acme/ca/users/ops@example.com/ops.json",
		"ocsp/a.example-1234",
	} {
		e := encodeKey(k)
		if got := decodeKey(e); got != k {
			t.Errorf("decodeKey(encodeKey(%q)) = %q (encoded %q)", k, got, e)
		}
		for i := 0; i < len(e); i++ {
			c := e[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '=') {
				t.Errorf("encodeKey(%q) = %q holds %q", k, e, c)
			}
		}
	}
}

// TestKVStorageShared: two nodes of a real embedded JetStream cluster share what either
// stores, list directories alike, and a lock taken on one excludes the other until released.
func TestKVStorageShared(t *testing.T) {
	c := clustertest.Start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := NewKVStorage(c.Nodes[0].JetStream(), c.Nodes[0].Replicas())
	defer a.Close()
	b := NewKVStorage(c.Nodes[1].JetStream(), c.Nodes[1].Replicas())
	defer b.Close()

	crt := "certificates/ca.example-dir/a.verge.test/a.verge.test.crt"
	key := "certificates/ca.example-dir/a.verge.test/a.verge.test.key"
	if err := a.Store(ctx, crt, []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(ctx, key, []byte("KEY")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Load(ctx, crt); err != nil || !bytes.Equal(got, []byte("CERT")) {
		t.Errorf("node 2 loads %q, %v; want CERT", got, err)
	}
	if _, err := b.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key: %v, want fs.ErrNotExist", err)
	}
	if !b.Exists(ctx, "certificates/ca.example-dir") || b.Exists(ctx, "certificates/other") {
		t.Error("Exists of a directory / of nothing is wrong")
	}
	all, err := b.List(ctx, "certificates", true)
	slices.Sort(all)
	if err != nil || !slices.Equal(all, []string{crt, key}) {
		t.Errorf("recursive list %v, %v", all, err)
	}
	top, err := b.List(ctx, "certificates", false)
	if err != nil || !slices.Equal(top, []string{"certificates/ca.example-dir"}) {
		t.Errorf("list %v, %v", top, err)
	}
	if st, err := b.Stat(ctx, crt); err != nil || !st.IsTerminal || st.Size != 4 {
		t.Errorf("stat %+v, %v", st, err)
	}
	if st, err := b.Stat(ctx, "certificates/ca.example-dir"); err != nil || st.IsTerminal {
		t.Errorf("stat of a directory %+v, %v", st, err)
	}

	// The lock excludes across nodes.
	if err := a.Lock(ctx, "issue_cert_a.verge.test"); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
	err = b.Lock(short, "issue_cert_a.verge.test")
	cancelShort()
	if err == nil {
		t.Fatal("node 2 took a lock node 1 holds")
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_a.verge.test") }()
	select {
	case err := <-got:
		t.Fatalf("node 2 took the lock while node 1 holds it: %v", err)
	default:
	}
	if err := a.Unlock(ctx, "issue_cert_a.verge.test"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("node 2 after release: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.verge.test"); err != nil {
		t.Fatal(err)
	}

	// Deleting a directory deletes what is under it, for both nodes.
	if err := b.Delete(ctx, "certificates/ca.example-dir/a.verge.test"); err != nil {
		t.Fatal(err)
	}
	if a.Exists(ctx, crt) || a.Exists(ctx, key) {
		t.Error("keys survive the deletion of their directory")
	}
}

// TestKVStorageStaleLock: a lock whose holder stopped refreshing it is taken over after
// its expiry.
func TestKVStorageStaleLock(t *testing.T) {
	c := clustertest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := NewKVStorage(c.Nodes[0].JetStream(), 1)
	b := NewKVStorage(c.Nodes[0].JetStream(), 1)
	defer b.Close()
	// A crashed holder: its lock's expiry is in the past and nobody refreshes it.
	val := []byte(`{"owner":"crashed","expires":"2000-01-01T00:00:00Z"}`)
	kv, err := a.bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, lockKey("stale"), val); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := b.Lock(ctx, "stale"); err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	if err := b.Unlock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
}
