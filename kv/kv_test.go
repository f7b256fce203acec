package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openNS(t *testing.T) (*SQLiteStore, Namespace) {
	t.Helper()
	s, err := OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	n, err := s.Namespace(context.Background(), "TEST")
	if err != nil {
		t.Fatal(err)
	}
	return s, n
}

// backend is a Namespace implementation under the shared behaviour tests: every backend
// must pass them.
type backend struct {
	// open returns a new, empty namespace, released when the test ends.
	open func(t *testing.T) Namespace
	// setNow replaces the clock of the namespace's store.
	setNow func(n Namespace, now func() time.Time)
}

var sqliteBackend = backend{
	open: func(t *testing.T) Namespace {
		_, n := openNS(t)
		return n
	},
	setNow: func(n Namespace, now func() time.Time) { n.(*sqliteNS).now = now },
}

// runConformance runs the shared behaviour tests against b.
func runConformance(t *testing.T, b backend) {
	for _, c := range []struct {
		name string
		f    func(*testing.T, backend)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"Limits", testLimits},
		{"Expiration", testExpiration},
		{"ListPrefixCursor", testListPrefixCursor},
		{"ListInvalidCursor", testListInvalidCursor},
		{"PutCopiesCallerBuffers", testPutCopiesCallerBuffers},
	} {
		t.Run(c.name, func(t *testing.T) { c.f(t, b) })
	}
}

func TestPutGetDelete(t *testing.T) { testPutGetDelete(t, sqliteBackend) }

func testPutGetDelete(t *testing.T, b backend) {
	ctx := context.Background()
	n := b.open(t)
	if e, err := n.Get(ctx, "a"); e != nil || err != nil {
		t.Fatalf("get missing: got %v, %v; want nil, nil", e, err)
	}
	if err := n.Put(ctx, "a", []byte("one"), PutOptions{Metadata: []byte(`{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	e, err := n.Get(ctx, "a")
	if err != nil || e == nil || string(e.Value) != "one" || string(e.Metadata) != `{"v":1}` || !e.Expiration.IsZero() {
		t.Fatalf("get: got %+v, %v", e, err)
	}
	if err := n.Put(ctx, "a", []byte("two"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if e, _ := n.Get(ctx, "a"); string(e.Value) != "two" || e.Metadata != nil {
		t.Fatalf("overwrite: got %+v, want value two without metadata", e)
	}
	if err := n.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if e, _ := n.Get(ctx, "a"); e != nil {
		t.Fatalf("after delete: got %+v, want nil", e)
	}
	if err := n.Delete(ctx, "a"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	if err := n.Put(ctx, "empty", nil, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if e, _ := n.Get(ctx, "empty"); e == nil || len(e.Value) != 0 {
		t.Fatalf("empty value: got %+v", e)
	}
}

func TestPutCopiesCallerBuffers(t *testing.T) { testPutCopiesCallerBuffers(t, sqliteBackend) }

// testPutCopiesCallerBuffers reuses the value and metadata buffers after Put returns, as a
// worker's KV call does (its arguments live in the instance's memory, which the next
// request overwrites): the namespace must have kept copies. A cluster node that cached the
// caller's slice served the next request's bytes (and faulted once the memory was freed).
func testPutCopiesCallerBuffers(t *testing.T, b backend) {
	ctx := context.Background()
	n := b.open(t)
	val, meta := []byte("value-one"), []byte(`{"m":1}`)
	if err := n.Put(ctx, "reused", val, PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	copy(val, "XXXXXXXXX")
	copy(meta, `{"m":2}`)
	e, err := n.Get(ctx, "reused")
	if err != nil || e == nil || string(e.Value) != "value-one" || string(e.Metadata) != `{"m":1}` {
		t.Fatalf("get after the caller reused its buffers: got %+v, %v; want value-one with {\"m\":1}", e, err)
	}
}

func TestLimits(t *testing.T) { testLimits(t, sqliteBackend) }

func testLimits(t *testing.T, b backend) {
	ctx := context.Background()
	n := b.open(t)
	now := time.Now()
	cases := []struct {
		name  string
		key   string
		value []byte
		o     PutOptions
	}{
		{"empty key", "", nil, PutOptions{}},
		{"long key", strings.Repeat("k", MaxKeyBytes+1), nil, PutOptions{}},
		{"big value", "k", make([]byte, MaxValueBytes+1), PutOptions{}},
		{"big metadata", "k", nil, PutOptions{Metadata: make([]byte, MaxMetadataBytes+1)}},
		{"short ttl", "k", nil, PutOptions{ExpirationTTL: 59 * time.Second}},
		{"near expiration", "k", nil, PutOptions{Expiration: now.Add(30 * time.Second)}},
	}
	for _, c := range cases {
		if err := n.Put(ctx, c.key, c.value, c.o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", c.name, err)
		}
	}
	if err := n.Put(ctx, strings.Repeat("k", MaxKeyBytes), nil, PutOptions{Metadata: make([]byte, MaxMetadataBytes)}); err != nil {
		t.Errorf("key and metadata at the limit: %v", err)
	}
	if _, err := n.List(ctx, ListOptions{Limit: 1001}); !errors.Is(err, ErrInvalid) {
		t.Errorf("list limit 1001: got %v, want ErrInvalid", err)
	}
}

func TestExpiration(t *testing.T) { testExpiration(t, sqliteBackend) }

func testExpiration(t *testing.T, b backend) {
	ctx := context.Background()
	n := b.open(t)
	now := time.Unix(1_700_000_000, 0)
	b.setNow(n, func() time.Time { return now })
	if err := n.Put(ctx, "ttl", []byte("x"), PutOptions{ExpirationTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := n.Put(ctx, "abs", []byte("y"), PutOptions{Expiration: now.Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	e, _ := n.Get(ctx, "ttl")
	if e == nil || !e.Expiration.Equal(now.Add(time.Minute)) {
		t.Fatalf("ttl entry: got %+v, want expiration %v", e, now.Add(time.Minute))
	}
	now = now.Add(90 * time.Second)
	if e, _ := n.Get(ctx, "ttl"); e != nil {
		t.Fatalf("expired key returned: %+v", e)
	}
	res, _ := n.List(ctx, ListOptions{})
	if len(res.Keys) != 1 || res.Keys[0].Name != "abs" {
		t.Fatalf("list after expiry: got %+v, want only abs", res.Keys)
	}
}

func TestListPrefixCursor(t *testing.T) { testListPrefixCursor(t, sqliteBackend) }

func testListPrefixCursor(t *testing.T, b backend) {
	ctx := context.Background()
	n := b.open(t)
	for i := range 25 {
		if err := n.Put(ctx, fmt.Sprintf("user:%03d", i), []byte("v"), PutOptions{Metadata: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"user", "usera", "zzz", "a"} {
		n.Put(ctx, k, []byte("v"), PutOptions{})
	}
	var got []string
	cursor := ""
	pages := 0
	for {
		res, err := n.List(ctx, ListOptions{Prefix: "user:", Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, k := range res.Keys {
			got = append(got, k.Name)
			if !bytes.Equal(k.Metadata, []byte{byte(len(got) - 1)}) {
				t.Fatalf("key %s metadata %v", k.Name, k.Metadata)
			}
		}
		if res.ListComplete {
			if res.Cursor != "" {
				t.Fatalf("complete page with cursor %q", res.Cursor)
			}
			break
		}
		cursor = res.Cursor
	}
	if len(got) != 25 || pages != 3 || got[0] != "user:000" || got[24] != "user:024" {
		t.Fatalf("listing: got %d keys in %d pages (%v...), want 25 in 3", len(got), pages, got[:min(3, len(got))])
	}
	res, _ := n.List(ctx, ListOptions{})
	if len(res.Keys) != 29 || res.Keys[0].Name != "a" || res.Keys[28].Name != "zzz" {
		t.Fatalf("full listing: got %d keys", len(res.Keys))
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := OpenSQLite(dir)
	n, _ := s.Namespace(ctx, "ns")
	n.Put(ctx, "k", []byte("v"), PutOptions{})
	s.Close()
	s2, _ := OpenSQLite(dir)
	defer s2.Close()
	n2, _ := s2.Namespace(ctx, "ns")
	if e, _ := n2.Get(ctx, "k"); e == nil || string(e.Value) != "v" {
		t.Fatalf("after reopen: got %+v, want v", e)
	}
	names, _ := s2.Names()
	if len(names) != 1 || names[0] != "ns" {
		t.Fatalf("names: got %v", names)
	}
	if _, err := s2.Namespace(ctx, "../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: got %v", err)
	}
}

func BenchmarkPut(b *testing.B) {
	s, _ := OpenSQLite(b.TempDir())
	defer s.Close()
	n, _ := s.Namespace(context.Background(), "b")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n.Put(context.Background(), fmt.Sprintf("k%d", i%100), []byte("value"), PutOptions{})
	}
}

func BenchmarkGet(b *testing.B) {
	s, _ := OpenSQLite(b.TempDir())
	defer s.Close()
	n, _ := s.Namespace(context.Background(), "b")
	n.Put(context.Background(), "k", []byte("value"), PutOptions{})
	b.ReportAllocs()
	for b.Loop() {
		n.Get(context.Background(), "k")
	}
}

// TestListInvalidCursor: a cursor List did not make, or made for another prefix, is an
// invalid argument, not an empty and complete listing.
func TestListInvalidCursor(t *testing.T) { testListInvalidCursor(t, sqliteBackend) }

func testListInvalidCursor(t *testing.T, b backend) {
	ctx := context.Background()
	n := b.open(t)
	for i := range 5 {
		if err := n.Put(ctx, fmt.Sprintf("k%d", i), []byte("v"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := n.List(ctx, ListOptions{Prefix: "k", Limit: 2})
	if err != nil || res.ListComplete || res.Cursor == "" {
		t.Fatalf("first page: %+v %v", res, err)
	}
	good := res.Cursor
	for _, c := range []struct{ cursor, prefix string }{
		{"zzzz", "k"},                   // base64 of bytes sorting after every key
		{"not base64!", "k"},            // not base64 at all
		{good[:len(good)-1] + "A", "k"}, // a damaged cursor
		{good, "j"},                     // another listing's cursor
		{EncodeCursor("x") + "", "k"},   // a well-formed cursor outside the prefix
		{"AQ", ""},                      // too short for its checksum
	} {
		res, err := n.List(ctx, ListOptions{Prefix: c.prefix, Cursor: c.cursor})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q prefix %q: got %+v, %v; want an invalid argument error", c.cursor, c.prefix, res, err)
		}
	}
	res, err = n.List(ctx, ListOptions{Prefix: "k", Cursor: good})
	if err != nil || len(res.Keys) != 3 || res.Keys[0].Name != "k2" || !res.ListComplete {
		t.Fatalf("second page: %+v %v", res, err)
	}
}

// TestOpenExistingIsReadOnly: OpenExisting creates nothing for a missing namespace, reads an
// existing one (beside a writer), and refuses writes.
func TestOpenExistingIsReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "kv")
	s, err := OpenSQLite(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.OpenExisting(ctx, "absent"); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("missing namespace: got %v, want ErrNamespaceNotFound", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenExisting created %s (%v)", dir, err)
	}
	w, err := s.Namespace(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, "a", []byte("1"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenExisting(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := r.Get(ctx, "a"); err != nil || e == nil || string(e.Value) != "1" {
		t.Fatalf("read-only get: %+v %v", e, err)
	}
	if err := r.Put(ctx, "b", []byte("2"), PutOptions{}); err == nil {
		t.Fatal("put through a read-only namespace succeeded")
	}
	if err := r.Delete(ctx, "a"); err == nil {
		t.Fatal("delete through a read-only namespace succeeded")
	}
}
