package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/worker"
)

// TestWorkerSQLSandbox attacks through a compiled worker, as reported: its Durable Object
// runs SQL that attaches another namespace's database file to read its key-value data,
// attaches a new path to create a file, drops and creates reserved tables and runs a
// statement that never ends. Each is refused with an error the worker sees; the victim's
// data and the attacker's own storage stay intact.
func TestWorkerSQLSandbox(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir, worker.Services{})
	e.do.SQLStatementTime = 200 * time.Millisecond
	// The victim: another namespace on the same store, with a secret in its storage.
	victim, err := durable.New(context.Background(), durable.Options{Name: "victim", Store: e.do})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Close(context.Background()) })
	vid := victim.IDFromName("bank")
	if err := victim.Do(context.Background(), vid, func(t *durable.Turn) error {
		return t.Put([]durable.Entry{{Key: "password", Value: []byte("hunter2")}})
	}); err != nil {
		t.Fatal(err)
	}
	victimFile := filepath.Join(dir, "do", "victim", vid.String()+".sqlite")
	if _, err := os.Stat(victimFile); err != nil {
		t.Fatal(err)
	}
	cfg := misbehaveConfig(t, worker.Limits{CPUTime: time.Second})
	cfg.Durable = map[string]worker.DurableBinding{"SQLDO": {Class: "Attack"}}
	w := e.deploy(t, cfg)
	run := func(sql string) *recorder {
		t.Helper()
		rec, err := serve(t, w, "POST", "/sql?o=evil", sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return rec
	}
	created := filepath.Join(dir, "planted.sqlite")
	for _, c := range []struct{ sql, want string }{
		{"ATTACH DATABASE '" + victimFile + "' AS k", "not allowed"},
		{"ATTACH '" + created + "' AS n", "not allowed"},
		{"VACUUM INTO '" + created + "'", "not allowed"},
		{"DROP TABLE _verge_kv", "reserved"},
		{"CREATE TABLE _verge_x (a)", "reserved"},
		{"SELECT * FROM _verge_kv", "reserved"},
		{"PRAGMA journal_mode=OFF", "not allowed"},
		{"PRAGMA writable_schema=ON", "not allowed"},
		{"SELECT load_extension('/tmp/x.so')", "not allowed"},
		{"COMMIT", "not allowed"},
		{"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", "time limit"},
	} {
		rec := run(c.sql)
		if rec.status != 400 || !strings.Contains(rec.body.String(), c.want) {
			t.Errorf("%s: got %v, want 400 %q", c.sql, rec, c.want)
		}
	}
	if _, err := os.Stat(created); !os.IsNotExist(err) {
		t.Fatalf("the worker created %s", created)
	}
	if rec := run("CREATE TABLE own (a)"); rec.status != 200 {
		t.Fatalf("own table: %v", rec)
	}
	if rec := run("INSERT INTO own VALUES (1), (2)"); rec.status != 200 {
		t.Fatalf("insert: %v", rec)
	}
	if rec := run("SELECT * FROM own"); rec.status != 200 || rec.body.String() != "2 rows" {
		t.Fatalf("select: %v", rec)
	}
	var got []byte
	victim.Do(context.Background(), vid, func(t *durable.Turn) error {
		vs, err := t.Get([]string{"password"})
		got = vs[0]
		return err
	})
	if string(got) != "hunter2" {
		t.Fatalf("victim's value: %q", got)
	}
}
