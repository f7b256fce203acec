package sqlitedb

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestCheckStatement(t *testing.T) {
	reserved := (&Sandbox{Reserved: []string{"_verge_"}}).reserved
	for _, c := range []struct {
		q  string
		ok bool
	}{
		{"SELECT 1", true},
		{"SELECT 1;", true},
		{"SELECT 1; ;; -- done\n /* c */", true},
		{"SELECT ';' AS a, \"x;y\" FROM t", true},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); UPDATE u SET a = 2; END;", true},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; END", true},
		{"ALTER TABLE t RENAME TO u", true},
		{"ALTER TABLE t RENAME COLUMN _verge_a TO _verge_b", true},
		{"SELECT 1; SELECT 2", false},
		{"SELECT 1;SELECT 2;", false},
		{"SELECT 1; -- c\n DROP TABLE t", false},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; DROP TABLE t", false},
		{"ALTER TABLE t RENAME TO _verge_t", false},
		{"alter table main.t rename to [_VERGE_t]", false},
		{"ALTER TABLE t RENAME TO \"_verge_\"\"x\"", false},
		{"VACUUM", false},
		{" vacuum INTO '/tmp/x'", false},
		{"SELECT 1\x00; DROP TABLE t", false},
		{"CREATE TABLE c (k BLOB REFERENCES _verge_kv (key) ON DELETE CASCADE)", false},
		{"CREATE TABLE c (k, FOREIGN KEY (k) REFERENCES main.\"_Verge_kv\")", false},
		{"ALTER TABLE c ADD COLUMN k REFERENCES sqlite_master", false},
		{"CREATE TABLE c (k REFERENCES p (id) ON DELETE CASCADE)", true},
	} {
		err := checkStatement(c.q, reserved)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrDenied)) {
			t.Errorf("%q: got %v, want ok=%v", c.q, err, c.ok)
		}
	}
}

func FuzzCheckStatement(f *testing.F) {
	for _, s := range []string{"SELECT 1; SELECT 2", "ALTER TABLE t RENAME TO _verge_x", "'unterminated", "/* x", "[a", "CREATE TRIGGER a BEGIN x; END"} {
		f.Add(s)
	}
	reserved := (&Sandbox{Reserved: []string{"_verge_"}}).reserved
	f.Fuzz(func(t *testing.T, q string) {
		if err := checkStatement(q, reserved); err != nil && !errors.Is(err, ErrDenied) {
			t.Fatalf("%q: %v does not wrap ErrDenied", q, err)
		}
	})
}

// TestLateTimerSparesNextStatement: a statement's time-limit timer that fired just as its
// run ended, and gets to interrupt only once the next run's statement is executing, leaves
// that statement alone.
func TestLateTimerSparesNextStatement(t *testing.T) {
	s := &Sandbox{StatementTime: time.Minute}
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"), Options{Sandbox: s})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := s.Run("SELECT 1", func() error { return db.QueryRow("SELECT 1").Scan(new(int)) }); err != nil {
		t.Fatal(err)
	}
	const q = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000) SELECT x FROM c"
	n := 0
	err = s.Run(q, func() error {
		rows, err := db.Query(q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if n++; n == 1 {
				s.mu.Lock()
				previous := s.seq - 1
				s.mu.Unlock()
				s.interrupt(previous) // the first run's timer, late
			}
		}
		return rows.Err()
	})
	if err != nil || n != 100000 {
		t.Fatalf("got %d rows, %v; want 100000 rows", n, err)
	}
}

// TestTimeLimitBeforeFirstStep: a time limit that expires before the run's statement takes
// its first step (SQLite forgets an interrupt made while no statement runs) still stops the
// statement. Without the repeated interrupt the endless query below never returns.
func TestTimeLimitBeforeFirstStep(t *testing.T) {
	s := &Sandbox{StatementTime: 20 * time.Millisecond}
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"), Options{Sandbox: s})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const q = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
	done := make(chan error, 1)
	go func() {
		done <- s.Run(q, func() error {
			// The run's timer fires while no statement runs: wait for its first interrupt.
			for {
				s.mu.Lock()
				fired := s.timedOut
				s.mu.Unlock()
				if fired {
					break
				}
				time.Sleep(time.Millisecond)
			}
			return db.QueryRow(q).Scan(new(int))
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeLimit) {
			t.Fatalf("got %v, want ErrTimeLimit", err)
		}
	case <-time.After(60 * time.Second): // a failure guard: the statement was never stopped
		t.Fatal("the endless statement was not interrupted")
	}
}
