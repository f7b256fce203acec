package durable

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/sqlitedb"
)

// runSQL runs one statement in its own turn of object id.
func runSQL(ns *Namespace, id ID, q string, args ...Value) (*SQLResult, error) {
	var res *SQLResult
	err := ns.Do(context.Background(), id, func(t *Turn) (err error) {
		res, err = t.SQL(q, args)
		return err
	})
	return res, err
}

// mustSQL runs a statement that must succeed.
func mustSQL(t *testing.T, ns *Namespace, id ID, q string, args ...Value) *SQLResult {
	t.Helper()
	res, err := runSQL(ns, id, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return res
}

// mustDeny runs a statement the sandbox must refuse.
func mustDeny(t *testing.T, ns *Namespace, id ID, q string) {
	t.Helper()
	_, err := runSQL(ns, id, q)
	if !errors.Is(err, ErrSQLDenied) {
		t.Errorf("%s: got %v, want ErrSQLDenied", q, err)
	}
}

func putKV(t *testing.T, ns *Namespace, id ID, k, v string) {
	t.Helper()
	if err := ns.Do(context.Background(), id, func(t *Turn) error {
		return t.Put([]Entry{{Key: k, Value: []byte(v)}})
	}); err != nil {
		t.Fatal(err)
	}
}

func getKV(t *testing.T, ns *Namespace, id ID, k string) string {
	t.Helper()
	var got []byte
	if err := ns.Do(context.Background(), id, func(t *Turn) error {
		vs, err := t.Get([]string{k})
		got = vs[0]
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(got)
}

// TestSQLCannotReachOtherFiles attacks as reported: a Durable Object's SQL attaches another
// namespace's database file (and a KV namespace's) to read it, attaches a new path to
// create a file, and tries every other statement that opens or writes a file.
func TestSQLCannotReachOtherFiles(t *testing.T) {
	dir := t.TempDir()
	st := OpenSQLite(dir)
	t.Cleanup(func() { st.Close() })
	newNamespace := func(name string) *Namespace {
		ns, err := New(context.Background(), Options{Name: name, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close(context.Background()) })
		return ns
	}
	victim, attacker := newNamespace("victim"), newNamespace("attacker")
	vid := victim.IDFromName("secrets")
	putKV(t, victim, vid, "password", "hunter2")
	victimFile := filepath.Join(dir, "victim", vid.String()+".sqlite")
	if _, err := os.Stat(victimFile); err != nil {
		t.Fatal(err)
	}
	// A KV namespace's file, as package kv lays it out.
	kvFile := filepath.Join(dir, "kv", "tenant.sqlite")
	kvdb, err := sqlitedb.Open(context.Background(), kvFile, sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvdb.Exec(`CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB); INSERT INTO kv VALUES ('k', 'kv-secret')`); err != nil {
		t.Fatal(err)
	}
	kvdb.Close()

	id := attacker.IDFromName("evil")
	created := filepath.Join(dir, "created-by-attacker.sqlite")
	for _, q := range []string{
		"ATTACH DATABASE '" + victimFile + "' AS k",
		"ATTACH '" + kvFile + "' AS k",
		"attach database '" + created + "' as n",
		"ATTACH 'file:" + created + "?mode=rwc' AS n",
		"ATTACH ':memory:' AS m",
		"DETACH k",
		"VACUUM",
		"VACUUM INTO '" + created + "'",
		"VACUUM main INTO '" + created + "'",
		"CREATE TEMP TABLE x (a)",
		"CREATE TABLE temp.x (a)",
		"SELECT * FROM temp.sqlite_master",
		"PRAGMA database_list",
		"PRAGMA journal_mode=OFF",
		"PRAGMA journal_mode=DELETE",
		"PRAGMA main.journal_mode",
		"PRAGMA synchronous=OFF",
		"PRAGMA writable_schema=ON",
		"PRAGMA query_only=1",
		"PRAGMA query_only=0",
		"PRAGMA temp_store_directory='/tmp'",
		"PRAGMA mmap_size=1000000000",
		"PRAGMA cache_size=-100000000",
		"PRAGMA foreign_keys=OFF",
		"PRAGMA trusted_schema=ON",
		"PRAGMA optimize",
		"SELECT * FROM pragma_database_list",
		"SELECT load_extension('/tmp/evil.so')",
		"SELECT load_extension('/tmp/evil.so', 'sqlite3_evil_init')",
		"BEGIN",
		"COMMIT",
		"ROLLBACK",
		"END",
		"SAVEPOINT s",
		"RELEASE verge_turn",
		"ROLLBACK TO verge_turn",
		"ANALYZE",
		"SELECT 1; ATTACH '" + created + "' AS n",
		"SELECT 1; DROP TABLE IF EXISTS anything",
	} {
		mustDeny(t, attacker, id, q)
	}
	for _, q := range []string{
		"SELECT fts3_tokenizer('simple')",
		"SELECT readfile('/etc/passwd')",
		"SELECT writefile('" + created + "', 'x')",
		"SELECT * FROM k.kv",
	} {
		if _, err := runSQL(attacker, id, q); err == nil {
			t.Errorf("%s: succeeded", q)
		}
	}
	if _, err := os.Stat(created); !os.IsNotExist(err) {
		t.Errorf("a statement created %s (stat: %v)", created, err)
	}
	// The victim's data is untouched and the attacker's own file is still durable: WAL and
	// synchronous=FULL (journal_mode persists in the file; synchronous is per connection).
	if got := getKV(t, victim, vid, "password"); got != "hunter2" {
		t.Errorf("victim's value: got %q", got)
	}
	mustSQL(t, attacker, id, "CREATE TABLE own (a)")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "attacker", id.String()+".sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode after the attack: %q, %v", mode, err)
	}
}

// TestSQLReservedTables attacks Verge's own tables from an object's SQL: dropping,
// creating, reading and writing _verge_* and sqlite_* names directly and through views,
// triggers, indexes, renames and table-valued functions.
func TestSQLReservedTables(t *testing.T) {
	ns := newNS(t, t.TempDir(), Options{})
	id := ns.IDFromName("o")
	putKV(t, ns, id, "k", "v")
	mustSQL(t, ns, id, "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
	for _, q := range []string{
		"DROP TABLE _verge_kv",
		"DROP TABLE main._verge_kv",
		`DROP TABLE "_VERGE_KV"`,
		"CREATE TABLE _verge_x (a)",
		`CREATE TABLE "_Verge_y" (a)`,
		"CREATE TABLE main.[_verge_z] (a)",
		"CREATE VIEW _verge_v AS SELECT 1",
		"CREATE INDEX _verge_i ON t (b)",
		"CREATE INDEX i ON _verge_kv (value)",
		"CREATE TRIGGER tr AFTER INSERT ON _verge_kv BEGIN SELECT 1; END",
		"CREATE TRIGGER _verge_tr AFTER INSERT ON t BEGIN SELECT 1; END",
		"SELECT * FROM _verge_kv",
		"SELECT count(*) FROM _verge_kv",
		"SELECT key FROM main._verge_kv",
		"INSERT INTO _verge_kv VALUES (x'6b', x'77')",
		"UPDATE _verge_kv SET value = x'77'",
		"DELETE FROM _verge_kv",
		"REPLACE INTO _verge_kv VALUES (x'6b', x'77')",
		"ALTER TABLE _verge_kv RENAME TO stolen",
		"ALTER TABLE _verge_kv ADD COLUMN c",
		"ALTER TABLE t RENAME TO _verge_t",
		`ALTER TABLE main.t RENAME TO "_verge_t"`,
		"ALTER TABLE t RENAME TO sqlite_t",
		"CREATE TABLE copy AS SELECT * FROM _verge_kv",
		"CREATE TABLE copy AS SELECT * FROM sqlite_master",
		"SELECT * FROM sqlite_master",
		"SELECT * FROM sqlite_schema",
		"SELECT name FROM main.sqlite_master",
		"SELECT * FROM sqlite_dbpage",
		"SELECT * FROM dbstat",
		"PRAGMA table_info(_verge_kv)",
		"PRAGMA index_list('_verge_kv')",
		"PRAGMA table_list",
		"SELECT * FROM pragma_table_info('_verge_kv')",
		"SELECT * FROM pragma_table_list",
		"PRAGMA schema_version = 1",
		"PRAGMA user_version = 7",
		"REINDEX _verge_kv",
		"WITH x AS (SELECT * FROM _verge_kv) SELECT * FROM x",
		"SELECT (SELECT value FROM _verge_kv LIMIT 1)",
		"CREATE VIRTUAL TABLE r USING rtree(id, a, b)",
		"CREATE VIRTUAL TABLE _verge_f USING fts5(x)",
		"CREATE TABLE c (k BLOB REFERENCES _verge_kv (key) ON DELETE CASCADE)",
		"CREATE TABLE c (k BLOB, FOREIGN KEY (k) REFERENCES main.\"_VERGE_KV\" ON UPDATE CASCADE)",
		"ALTER TABLE t ADD COLUMN k BLOB REFERENCES _verge_kv",
	} {
		mustDeny(t, ns, id, q)
	}
	// SQLite itself refuses direct schema writes (writable_schema is denied, defensive mode
	// is on); AUTOINCREMENT's counters are as reserved as the rest.
	for _, q := range []string{
		"INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, 'CREATE TABLE x (a)')",
		"UPDATE sqlite_master SET sql = 'CREATE TABLE _verge_kv (a)' WHERE name = '_verge_kv'",
		"DELETE FROM sqlite_master WHERE name = '_verge_kv'",
	} {
		if _, err := runSQL(ns, id, q); err == nil {
			t.Errorf("%s: succeeded", q)
		}
	}
	mustSQL(t, ns, id, "CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT)")
	mustDeny(t, ns, id, "SELECT * FROM sqlite_sequence")
	// sqlite_sequence is an ordinary table to SQLite (defensive mode lets it be written):
	// the sandbox refuses writes to it itself.
	for _, q := range []string{
		"INSERT INTO sqlite_sequence VALUES ('_verge_kv', 1)",
		"INSERT INTO main.\"SQLITE_SEQUENCE\" (name, seq) VALUES ('seq', 1)",
		"UPDATE sqlite_sequence SET seq = 5",
		"DELETE FROM sqlite_sequence",
		"REPLACE INTO sqlite_sequence VALUES ('seq', 9)",
	} {
		mustDeny(t, ns, id, q)
	}
	mustSQL(t, ns, id, "CREATE TRIGGER reseq AFTER INSERT ON seq BEGIN UPDATE sqlite_sequence SET seq = 0; END")
	mustDeny(t, ns, id, "INSERT INTO seq VALUES (NULL)")
	mustSQL(t, ns, id, "DROP TRIGGER reseq")
	mustSQL(t, ns, id, "INSERT INTO seq VALUES (NULL)")
	mustSQL(t, ns, id, "ALTER TABLE seq RENAME TO seq2")
	mustSQL(t, ns, id, "DROP TABLE seq2")
	// Through objects created while nothing reserved was touched: a view and a trigger
	// run with the policy of the statement that uses them.
	mustSQL(t, ns, id, "CREATE VIEW peek AS SELECT * FROM _verge_kv")
	mustDeny(t, ns, id, "SELECT * FROM peek")
	mustSQL(t, ns, id, "CREATE TRIGGER wipe AFTER INSERT ON t BEGIN DELETE FROM _verge_kv; END")
	mustDeny(t, ns, id, "INSERT INTO t (b) VALUES ('x')")
	mustSQL(t, ns, id, "DROP TRIGGER wipe")
	mustSQL(t, ns, id, "CREATE VIEW meta AS SELECT * FROM sqlite_master")
	mustDeny(t, ns, id, "SELECT * FROM meta")

	if got := getKV(t, ns, id, "k"); got != "v" {
		t.Fatalf("reserved table changed: k = %q", got)
	}
	// Nothing reserved was created.
	var names []string
	if err := ns.Do(context.Background(), id, func(tn *Turn) error {
		rows, err := tn.txn.(*sqliteTxn).tx.Query("SELECT name FROM sqlite_master WHERE name LIKE '\\_verge\\_%' ESCAPE '\\'")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		return rows.Err()
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "_verge_kv" {
		t.Fatalf("reserved names in the schema: %v, want only _verge_kv", names)
	}
}

// TestSQLOrdinaryUseStillWorks: the sandbox leaves an object's own schema work alone.
func TestSQLOrdinaryUseStillWorks(t *testing.T) {
	ns := newNS(t, t.TempDir(), Options{})
	id := ns.IDFromName("o")
	putKV(t, ns, id, "k", "v")
	for _, q := range []string{
		"CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, b TEXT NOT NULL, c BLOB)",
		"CREATE INDEX t_b ON t (b)",
		"CREATE UNIQUE INDEX t_c ON t (c) WHERE c IS NOT NULL",
		"INSERT INTO t (b) VALUES ('one'), ('two')",
		"UPDATE t SET c = randomblob(16) WHERE id = 1",
		"CREATE TABLE log (msg TEXT)",
		"CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.b); END",
		"INSERT INTO t (b) VALUES ('three')",
		"CREATE VIEW tv AS SELECT b FROM t",
		"SELECT * FROM tv",
		"ALTER TABLE t ADD COLUMN d INTEGER DEFAULT 0",
		"ALTER TABLE t RENAME COLUMN d TO e",
		"ALTER TABLE log RENAME TO messages",
		"CREATE TABLE t2 AS SELECT id, b FROM t",
		"PRAGMA table_info(t)",
		"PRAGMA table_xinfo('t')",
		"PRAGMA index_list(t)",
		"PRAGMA foreign_key_check",
		"PRAGMA integrity_check",
		"PRAGMA quick_check(t)",
		"PRAGMA defer_foreign_keys = ON",
		"PRAGMA foreign_keys",
		"SELECT name FROM pragma_table_info('t')",
		"SELECT value FROM json_each('[1,2,3]')",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT sum(x) FROM c",
		"CREATE VIRTUAL TABLE docs USING fts5(body)",
		"INSERT INTO docs VALUES ('hello sandbox')",
		"SELECT * FROM docs WHERE docs MATCH 'sandbox'",
		"SELECT 1;",
		"SELECT 1; -- trailing comment",
		"DROP VIEW tv",
		"DROP TABLE docs",
		"DROP TABLE t2",
		"DROP TABLE t",
	} {
		mustSQL(t, ns, id, q)
	}
	if res := mustSQL(t, ns, id, "SELECT msg FROM messages ORDER BY msg"); len(res.Rows) != 1 || res.Rows[0][0] != "three" {
		t.Fatalf("trigger result: %v", res.Rows)
	}
	if got := getKV(t, ns, id, "k"); got != "v" {
		t.Fatalf("k = %q", got)
	}
	if err := ns.Do(context.Background(), id, func(t *Turn) error { return t.DeleteAll(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := runSQL(ns, id, "SELECT * FROM messages"); err == nil {
		t.Fatal("DeleteAll left the SQL tables")
	}
}

// TestSQLStatementTimeLimit: statements that never end (recursive CTEs, in the first row or
// between rows, reading or writing) are interrupted at the time limit; an interrupted read
// keeps the batch, an interrupted write fails its whole batch (SQLite rolls it back) without
// committing half of it, and the object keeps working.
func TestSQLStatementTimeLimit(t *testing.T) {
	st := OpenSQLite(t.TempDir())
	st.SQLStatementTime = 100 * time.Millisecond
	t.Cleanup(func() { st.Close() })
	ns, err := New(context.Background(), Options{Name: "slow", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(context.Background()) })
	id := ns.IDFromName("o")
	mustSQL(t, ns, id, "CREATE TABLE t (x)")
	const forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
	for _, q := range []string{
		forever + "SELECT count(*) FROM c",
		forever + "SELECT x FROM c WHERE x = 1 OR x < 0",
		forever + "SELECT x FROM c ORDER BY x DESC LIMIT 1",
	} {
		done := make(chan error, 1)
		go func() {
			err := ns.Do(context.Background(), id, func(t *Turn) error {
				if err := t.Put([]Entry{{Key: "before", Value: []byte(q)}}); err != nil {
					return err
				}
				_, err := t.SQL(q, nil)
				if !errors.Is(err, ErrSQLTimeLimit) {
					return errors.New("got " + errString(err) + ", want ErrSQLTimeLimit")
				}
				// A read was interrupted: the request may go on and its writes commit.
				return t.Put([]Entry{{Key: "after", Value: []byte(q)}})
			})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: not interrupted", q)
		}
		if getKV(t, ns, id, "before") != q || getKV(t, ns, id, "after") != q {
			t.Fatalf("%s: the turn's writes were lost", q)
		}
	}
	// A write interrupted mid-way: SQLite rolls back the whole batch; nothing of it commits.
	err = ns.Do(context.Background(), id, func(t *Turn) error {
		if err := t.Put([]Entry{{Key: "lost", Value: []byte("x")}}); err != nil {
			return err
		}
		_, err := t.SQL("INSERT INTO t "+forever+"SELECT x FROM c", nil)
		if !errors.Is(err, ErrSQLTimeLimit) {
			return errors.New("got " + errString(err) + ", want ErrSQLTimeLimit")
		}
		return nil // even when the request ignores the error, the batch cannot commit
	})
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("interrupted write: Do returned %v, want the batch's failure", err)
	}
	if got := getKV(t, ns, id, "lost"); got != "" {
		t.Fatalf("a write of the rolled-back batch survived: %q", got)
	}
	if res := mustSQL(t, ns, id, "SELECT count(*) FROM t"); res.Rows[0][0] != int64(0) {
		t.Fatalf("rows of the interrupted insert: %v", res.Rows)
	}
	putKV(t, ns, id, "next", "ok")
	if getKV(t, ns, id, "next") != "ok" {
		t.Fatal("the object does not work after an interrupted batch")
	}

	// DeleteAll drops the object's tables with Verge's own statements; the foreign-key
	// cascade of a drop fires the object's trigger, which must not run unbounded.
	for _, q := range []string{
		"CREATE TABLE p (id INTEGER PRIMARY KEY)",
		"CREATE TABLE c (pid INTEGER REFERENCES p (id) ON DELETE CASCADE)",
		"CREATE TABLE sink (x)", // dropped after p, whose drop cascades
		"CREATE TRIGGER spin AFTER DELETE ON c BEGIN INSERT INTO sink " + forever + "SELECT x FROM c; END",
		"INSERT INTO p VALUES (1)",
		"INSERT INTO c VALUES (1)",
	} {
		mustSQL(t, ns, id, q)
	}
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(context.Background(), id, func(t *Turn) error { return t.DeleteAll(context.Background()) })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrSQLTimeLimit) {
			t.Fatalf("DeleteAll with a spinning cascade: got %v, want ErrSQLTimeLimit", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("DeleteAll's cascade was not interrupted")
	}
	putKV(t, ns, id, "after-delete-all", "ok")
	if getKV(t, ns, id, "after-delete-all") != "ok" {
		t.Fatal("the object does not work after the interrupted DeleteAll")
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestSQLMemoryLimits: huge values and huge results are refused, not built.
func TestSQLMemoryLimits(t *testing.T) {
	ns := newNS(t, t.TempDir(), Options{})
	id := ns.IDFromName("o")
	for _, q := range []string{
		"SELECT zeroblob(1000000000)",
		"SELECT randomblob(100000000)",
		"SELECT printf('%.*c', 100000000, 'x')",
		"SELECT length(zeroblob(5000000))",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) SELECT zeroblob(1000000) FROM c",
		"SELECT " + strings.Repeat("1+", 200) + "1",
		"SELECT " + strings.Repeat("?,", 200) + "?",
		"SELECT '" + strings.Repeat("x", 200<<10) + "'",
	} {
		if _, err := runSQL(ns, id, q); err == nil {
			t.Errorf("%.80s: succeeded", q)
		}
	}
	// A full-size key-value entry still fits.
	putKV(t, ns, id, strings.Repeat("k", MaxKeyBytes), strings.Repeat("v", MaxValueBytes))
	if got := getKV(t, ns, id, strings.Repeat("k", MaxKeyBytes)); len(got) != MaxValueBytes {
		t.Fatalf("full-size value: got %d bytes", len(got))
	}
}
