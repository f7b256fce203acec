package sqlitedb

import (
	"errors"
	"testing"
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
