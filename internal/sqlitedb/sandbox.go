package sqlitedb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Defaults and fixed limits of a Sandbox.
const (
	// DefaultStatementTime bounds one untrusted statement, every row of its result included.
	DefaultStatementTime = 5 * time.Second
	// DefaultMaxLength is SQLITE_LIMIT_LENGTH of a sandboxed connection: the largest string,
	// blob or row, and so what zeroblob, randomblob, printf or repeated concatenation can
	// build in one value.
	DefaultMaxLength = 4 << 20
	// MaxSQLLength bounds the text of one statement (SQLITE_LIMIT_SQL_LENGTH).
	MaxSQLLength = 100 << 10
	// MaxColumns bounds the columns of a table, an index and a result (SQLITE_LIMIT_COLUMN).
	MaxColumns = 100
	// MaxVariables bounds the parameters of one statement (SQLITE_LIMIT_VARIABLE_NUMBER).
	MaxVariables = 100
	// MaxExprDepth bounds expression nesting (SQLITE_LIMIT_EXPR_DEPTH).
	MaxExprDepth = 100
	// MaxFunctionArgs bounds a function call's arguments (SQLITE_LIMIT_FUNCTION_ARG).
	MaxFunctionArgs = 32
	// MaxTriggerDepth bounds recursive trigger firing (SQLITE_LIMIT_TRIGGER_DEPTH).
	MaxTriggerDepth = 32
)

// Errors of untrusted statements. Run wraps one of them, with the reason, when SQLite
// refused or stopped a statement because of the sandbox.
var (
	// ErrDenied: the statement does something the sandbox does not allow.
	ErrDenied = errors.New("not allowed in sandboxed SQL")
	// ErrTimeLimit: the statement ran longer than Sandbox.StatementTime and was interrupted.
	ErrTimeLimit = errors.New("statement time limit exceeded")
)

// Sandbox confines statements run through Run (SQL written by a tenant: a Durable Object's
// code) to the database's own tables. It is enforced inside SQLite, by an authorizer that
// sees every table, column, function, pragma and schema change a statement touches while it
// is compiled (views, triggers and table-valued pragmas included), and by per-connection
// limits:
//
//   - Only the main database: ATTACH and DETACH are denied (and SQLITE_LIMIT_ATTACHED is
//     0), so is VACUUM (it attaches a scratch database; VACUUM INTO writes any path), and
//     so is every object of the temp database.
//   - Reserved names (SQLite's "sqlite_" tables and Reserved's prefixes, case-insensitively)
//     can be neither read, written, created, dropped, renamed to, indexed, triggered on nor
//     referenced by a foreign key; the schema table is read and written only by SQLite
//     itself inside DDL statements.
//   - Transactions belong to the caller: BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE are
//     denied (the caller batches commits).
//   - PRAGMAs come from an allow list of read-only schema queries (table_info, index_list,
//     foreign_key_check, integrity_check, ...) and defer_foreign_keys; journal_mode,
//     synchronous, writable_schema, query_only and every other pragma are denied.
//   - Functions that reach outside the database (load_extension, fts3_tokenizer, readfile,
//     writefile, edit) are denied; virtual tables are limited to the fts5 module; ANALYZE
//     (it writes sqlite_stat tables) is denied.
//   - One statement per call; each runs at most StatementTime (sqlite3_interrupt), and
//     lengths, columns, parameters, expression depth and trigger depth are capped.
//
// Statements not run through Run (the caller's own) are not restricted. The connection is
// also opened in SQLite's defensive mode with trusted_schema off.
//
// A Sandbox serves one database opened with Options.Sandbox; Run must not be called
// concurrently (the database has a single connection).
type Sandbox struct {
	// Reserved lists name prefixes, besides "sqlite_", that untrusted statements may not
	// touch (compared case-insensitively).
	Reserved []string
	// StatementTime bounds one untrusted statement. Zero means DefaultStatementTime.
	StatementTime time.Duration
	// MaxLength is SQLITE_LIMIT_LENGTH. Zero means DefaultMaxLength. It applies to the
	// caller's statements too, so it must hold the caller's largest row.
	MaxLength int

	mu        sync.Mutex
	handle    uintptr // the connection's sqlite3*, set by Connect
	untrusted bool    // statements compiled now are the tenant's
	running   bool    // an untrusted statement is running: the timer may interrupt it
	seq       uint64  // counts runs: a timer interrupts only the run it was armed for
	timedOut  bool
	denied    string                      // why the authorizer refused, for the error
	ddl       sqlite.AuthorizerActionCode // the DDL action of the current statement (0: none)
}

func (s *Sandbox) statementTime() time.Duration {
	if s.StatementTime > 0 {
		return s.StatementTime
	}
	return DefaultStatementTime
}

// Run runs fn, which must run query (and consume its rows) on the sandboxed database, with
// the sandbox's policy in force and under its time limit. Errors caused by the policy wrap
// ErrDenied, those of the time limit ErrTimeLimit.
func (s *Sandbox) Run(query string, fn func() error) error {
	if err := checkStatement(query, s.reserved); err != nil {
		return err
	}
	return s.run(true, fn)
}

// Bound runs fn, the caller's own statements on the sandboxed database, under the time
// limit only (no policy). Use it where the caller's statement can run code of the tenant's:
// dropping the tenant's tables runs their foreign-key actions and the triggers those fire.
func (s *Sandbox) Bound(fn func() error) error { return s.run(false, fn) }

// run runs fn under the time limit, and under the policy when untrusted.
func (s *Sandbox) run(untrusted bool, fn func() error) error {
	s.mu.Lock()
	s.untrusted, s.running, s.timedOut, s.denied, s.ddl = untrusted, true, false, "", 0
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	limit := s.statementTime()
	timer := time.AfterFunc(limit, func() { s.interrupt(seq) })
	err := fn()
	timer.Stop()
	s.mu.Lock()
	s.untrusted, s.running = false, false
	denied, timedOut := s.denied, s.timedOut
	s.mu.Unlock()
	switch {
	case err == nil:
		return nil
	case denied != "": // only ever set while untrusted
		return fmt.Errorf("%s: %w", denied, ErrDenied)
	case timedOut:
		return fmt.Errorf("statement ran longer than %v: %w", limit, ErrTimeLimit)
	}
	return err
}

// interrupt stops the statements of run seq (the time limit's timer), unless that run has
// ended: a timer that fired as its run ended may get here after the next run started.
func (s *Sandbox) interrupt(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running || s.seq != seq || s.handle == 0 {
		return
	}
	s.timedOut = true
	// A fresh TLS: the statement runs on the connection's own, and sqlite3_interrupt only
	// sets a flag that the running statement checks.
	tls := libc.NewTLS()
	sqlite3.Xsqlite3_interrupt(tls, s.handle)
	tls.Close()
	// SQLite clears that flag when a statement starts on a connection running none: an
	// interrupt that lands between statements, or before the run's first step, is lost.
	// Repeat it until the run ends.
	time.AfterFunc(interruptRepeat, func() { s.interrupt(seq) })
}

// interruptRepeat is how often a timed-out run is interrupted again until it ends.
const interruptRepeat = 10 * time.Millisecond

// InTransaction reports whether the connection has a transaction open. SQLite rolls the
// whole transaction back when a writing statement is interrupted or runs out of memory or
// disk; a caller that batches writes in one transaction checks this after an error.
func (s *Sandbox) InTransaction() bool {
	s.mu.Lock()
	h := s.handle
	s.mu.Unlock()
	if h == 0 {
		return false
	}
	tls := libc.NewTLS()
	defer tls.Close()
	return sqlite3.Xsqlite3_get_autocommit(tls, h) == 0
}

// reserved reports whether name is reserved: SQLite's own or one of Reserved's prefixes.
func (s *Sandbox) reserved(name string) bool {
	return hasPrefixFold(name, "sqlite_") || s.reservedByCaller(name)
}

func (s *Sandbox) reservedByCaller(name string) bool {
	for _, p := range s.Reserved {
		if hasPrefixFold(name, p) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// schemaTable reports whether name is the schema table or the AUTOINCREMENT counters,
// which SQLite reads and writes itself while it compiles DDL.
func schemaTable(name string) bool {
	switch strings.ToLower(name) {
	case "sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema", "sqlite_sequence":
		return true
	}
	return false
}

// schemaRead reports whether a read of the schema table is SQLite's own bookkeeping in the
// current statement: DROP and ALTER TABLE rewrite the schema (their syntax holds no query of
// the user's); CREATE reads only the new entry's row id, so a CREATE TABLE ... AS SELECT
// from the schema table is still refused.
func (s *Sandbox) schemaRead(column string) bool {
	switch s.ddl {
	case 0:
		return false
	case sqlite.AuthCreateTable, sqlite.AuthCreateIndex, sqlite.AuthCreateView, sqlite.AuthCreateTrigger, sqlite.AuthCreateVTable:
		return strings.EqualFold(column, "rowid")
	}
	return true
}

// mainDB reports whether db names the main database (an empty name is unqualified).
func mainDB(db string) bool { return db == "" || strings.EqualFold(db, "main") }

// deniedFunctions reach outside the database or into SQLite's internals.
var deniedFunctions = map[string]bool{
	"load_extension": true, "fts3_tokenizer": true, "readfile": true, "writefile": true, "edit": true,
}

// Pragmas an untrusted statement may run. nameArg: the pragma takes a table or index name
// (checked against reserved names); needsArg: without one it would list reserved tables;
// readOnly: setting a value is denied.
var allowedPragmas = map[string]struct{ nameArg, needsArg, readOnly bool }{
	"table_info":         {nameArg: true, needsArg: true, readOnly: true},
	"table_xinfo":        {nameArg: true, needsArg: true, readOnly: true},
	"table_list":         {nameArg: true, needsArg: true, readOnly: true},
	"index_list":         {nameArg: true, needsArg: true, readOnly: true},
	"index_info":         {nameArg: true, needsArg: true, readOnly: true},
	"index_xinfo":        {nameArg: true, needsArg: true, readOnly: true},
	"foreign_key_list":   {nameArg: true, needsArg: true, readOnly: true},
	"foreign_key_check":  {nameArg: true, readOnly: true},
	"integrity_check":    {nameArg: true, readOnly: true},
	"quick_check":        {nameArg: true, readOnly: true},
	"defer_foreign_keys": {},
	"foreign_keys":       {readOnly: true},
	"page_count":         {readOnly: true},
	"page_size":          {readOnly: true},
	"freelist_count":     {readOnly: true},
	"data_version":       {readOnly: true},
}

// nameless pragmas whose argument is a number, not a name (integrity_check(N)).
func numeric(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// authorize is the connection's authorizer. Statements compiled outside Run are allowed.
func (s *Sandbox) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, db, _ string) sqlite.AuthorizerReturnCode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.untrusted {
		return sqlite.AuthorizerOK
	}
	if why := s.check(action, arg1, arg2, db); why != "" {
		if s.denied == "" {
			s.denied = why
		}
		return sqlite.AuthorizerDeny
	}
	return sqlite.AuthorizerOK
}

// check returns why the action is denied, or "" when it is allowed. s.mu is held.
func (s *Sandbox) check(action sqlite.AuthorizerActionCode, arg1, arg2, db string) string {
	table := func(verb, name string) string {
		if s.reserved(name) {
			return fmt.Sprintf("%s %q: the name is reserved", verb, name)
		}
		if !mainDB(db) {
			return fmt.Sprintf("%s %q: only the main database is reachable", verb, name)
		}
		return ""
	}
	switch action {
	case sqlite.AuthSelect, sqlite.AuthRecursive:
		return ""
	case sqlite.AuthRead:
		if schemaTable(arg1) {
			if s.schemaRead(arg2) {
				return ""
			}
			return fmt.Sprintf("reading %q: the name is reserved", arg1)
		}
		if strings.EqualFold(arg1, "dbstat") {
			return "reading dbstat: it describes reserved tables"
		}
		return table("reading", arg1)
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete:
		if strings.EqualFold(arg1, "sqlite_sequence") {
			// An ordinary table to SQLite, even in defensive mode: a direct write would
			// succeed. Only SQLite's own bookkeeping inside DDL (DROP or RENAME of an
			// AUTOINCREMENT table) writes it; AUTOINCREMENT inserts bypass the authorizer.
			if s.ddl != 0 {
				return ""
			}
			return fmt.Sprintf("writing %q: the name is reserved", arg1)
		}
		if schemaTable(arg1) {
			// Direct writes fail in SQLite itself (writable_schema is denied, defensive
			// mode is on); these are its own for DDL.
			return ""
		}
		return table("writing", arg1)
	case sqlite.AuthCreateTable, sqlite.AuthCreateView, sqlite.AuthCreateIndex, sqlite.AuthCreateTrigger:
		s.ddl = action
		// SQLite refuses user-chosen "sqlite_" names itself and names automatic indexes so.
		if s.reservedByCaller(arg1) {
			return fmt.Sprintf("creating %q: the name is reserved", arg1)
		}
		if arg2 != "" && s.reserved(arg2) {
			return fmt.Sprintf("creating %q on %q: the table is reserved", arg1, arg2)
		}
		if !mainDB(db) {
			return fmt.Sprintf("creating %q: only the main database is reachable", arg1)
		}
		return ""
	case sqlite.AuthCreateVTable:
		s.ddl = action
		if !strings.EqualFold(arg2, "fts5") {
			return fmt.Sprintf("virtual table module %q: only fts5 is available", arg2)
		}
		return table("creating", arg1)
	case sqlite.AuthDropTable, sqlite.AuthDropView, sqlite.AuthDropIndex, sqlite.AuthDropTrigger, sqlite.AuthDropVTable:
		s.ddl = action
		if arg2 != "" && action != sqlite.AuthDropVTable && s.reserved(arg2) {
			return fmt.Sprintf("dropping %q of %q: the table is reserved", arg1, arg2)
		}
		return table("dropping", arg1)
	case sqlite.AuthAlterTable:
		s.ddl = action
		// arg1 is the database, arg2 the table.
		if s.reserved(arg2) {
			return fmt.Sprintf("altering %q: the name is reserved", arg2)
		}
		if !mainDB(arg1) {
			return fmt.Sprintf("altering %q: only the main database is reachable", arg2)
		}
		return ""
	case sqlite.AuthReindex:
		if arg1 != "" {
			return table("reindexing", arg1)
		}
		return ""
	case sqlite.AuthFunction:
		if deniedFunctions[strings.ToLower(arg2)] {
			return fmt.Sprintf("function %s", arg2)
		}
		return ""
	case sqlite.AuthPragma:
		p, ok := allowedPragmas[strings.ToLower(arg1)]
		switch {
		case !ok:
			return fmt.Sprintf("PRAGMA %s", arg1)
		case !mainDB(db):
			return fmt.Sprintf("PRAGMA %s.%s: only the main database is reachable", db, arg1)
		case p.needsArg && arg2 == "":
			return fmt.Sprintf("PRAGMA %s without a table: it lists reserved tables", arg1)
		case p.nameArg && arg2 != "" && !numeric(arg2) && s.reserved(arg2):
			return fmt.Sprintf("PRAGMA %s(%s): the name is reserved", arg1, arg2)
		case p.readOnly && !p.nameArg && arg2 != "":
			return fmt.Sprintf("PRAGMA %s: it is read-only here", arg1)
		}
		return ""
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return "ATTACH, DETACH and VACUUM: only the object's own database is reachable"
	case sqlite.AuthTransaction, sqlite.AuthSavepoint:
		return "transaction control (" + arg1 + "): use the storage API's transactions"
	case sqlite.AuthAnalyze:
		return "ANALYZE"
	case sqlite.AuthCreateTempTable, sqlite.AuthCreateTempIndex, sqlite.AuthCreateTempTrigger, sqlite.AuthCreateTempView,
		sqlite.AuthDropTempTable, sqlite.AuthDropTempIndex, sqlite.AuthDropTempTrigger, sqlite.AuthDropTempView:
		return "temporary objects: only the main database is reachable"
	}
	return fmt.Sprintf("operation %d", action)
}

// sandboxConnector opens connections with the sandbox's authorizer and limits installed,
// so that a connection database/sql opens again (after an error) is confined as well.
type sandboxConnector struct {
	inner driver.Connector
	s     *Sandbox
}

func (c *sandboxConnector) Driver() driver.Driver { return c.inner.Driver() }

func (c *sandboxConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.s.install(dc); err != nil {
		dc.Close()
		return nil, fmt.Errorf("sqlite sandbox: %w", err)
	}
	return dc, nil
}

// install confines a new connection. It fails closed: a driver that does not expose what
// the sandbox needs gives no connection at all.
func (s *Sandbox) install(dc driver.Conn) error {
	ar, ok := dc.(sqlite.AuthorizerRegisterer)
	if !ok {
		return fmt.Errorf("driver connection %T has no authorizer", dc)
	}
	// The driver does not export the sqlite3* handle that sqlite3_interrupt and
	// sqlite3_limit take; it is the connection's db field.
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("driver connection %T: unexpected type", dc)
	}
	f := v.Elem().FieldByName("db")
	if !f.IsValid() || f.Kind() != reflect.Uintptr || f.Uint() == 0 {
		return fmt.Errorf("driver connection %T: no sqlite3 handle", dc)
	}
	h := uintptr(f.Uint())
	maxLen := s.MaxLength
	if maxLen <= 0 {
		maxLen = DefaultMaxLength
	}
	tls := libc.NewTLS()
	for _, l := range []struct{ id, v int32 }{
		{sqlite3.SQLITE_LIMIT_ATTACHED, 0},
		{sqlite3.SQLITE_LIMIT_LENGTH, int32(maxLen)},
		{sqlite3.SQLITE_LIMIT_SQL_LENGTH, MaxSQLLength},
		{sqlite3.SQLITE_LIMIT_COLUMN, MaxColumns},
		{sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MaxVariables},
		{sqlite3.SQLITE_LIMIT_EXPR_DEPTH, MaxExprDepth},
		{sqlite3.SQLITE_LIMIT_FUNCTION_ARG, MaxFunctionArgs},
		{sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH, MaxTriggerDepth},
	} {
		sqlite3.Xsqlite3_limit(tls, h, l.id, l.v)
	}
	attached := sqlite3.Xsqlite3_limit(tls, h, sqlite3.SQLITE_LIMIT_ATTACHED, -1)
	tls.Close()
	if attached != 0 {
		return errors.New("could not limit attached databases")
	}
	if err := ar.RegisterAuthorizer(s.authorize); err != nil {
		return err
	}
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
	return nil
}

// checkStatement checks what the authorizer cannot see: that query is one statement (the
// policy's view of a statement must not span two), the new name of ALTER TABLE ... RENAME
// TO, and the parent table of a foreign key (REFERENCES): a foreign key on a reserved table
// would run the tenant's cascades, and the triggers they fire, inside the caller's own
// statements on that table, outside the sandbox.
func checkStatement(query string, reserved func(string) bool) error {
	if strings.IndexByte(query, 0) >= 0 {
		return fmt.Errorf("a NUL byte in the statement: %w", ErrDenied)
	}
	toks, rest := firstStatement(query)
	if strings.TrimSpace(rest) != "" {
		return fmt.Errorf("more than one statement in one call: %w", ErrDenied)
	}
	if len(toks) > 0 && strings.EqualFold(toks[0], "vacuum") {
		// It attaches a scratch database (VACUUM INTO: any path); the authorizer would deny
		// that, but only after SQLite refused VACUUM inside the caller's transaction.
		return fmt.Errorf("VACUUM: only the object's own database is reachable: %w", ErrDenied)
	}
	for i, tok := range toks {
		if !strings.EqualFold(tok, "references") || i+1 >= len(toks) {
			continue
		}
		parent := toks[i+1]
		if i+3 < len(toks) && toks[i+2] == "." {
			parent = toks[i+3]
		}
		if reserved(parent) {
			return fmt.Errorf("a foreign key to %q: the table is reserved: %w", parent, ErrDenied)
		}
	}
	// ALTER TABLE [schema.]name RENAME TO new
	if len(toks) >= 6 && strings.EqualFold(toks[0], "alter") && strings.EqualFold(toks[1], "table") {
		i := 3
		if toks[3] == "." {
			i = 5
		}
		if i+2 < len(toks) && strings.EqualFold(toks[i], "rename") && strings.EqualFold(toks[i+1], "to") && reserved(toks[i+2]) {
			return fmt.Errorf("renaming to %q: the name is reserved: %w", toks[i+2], ErrDenied)
		}
	}
	return nil
}

// firstStatement splits query after its first complete statement (sqlite3_complete decides
// where that is, CREATE TRIGGER bodies included) and returns that statement's tokens
// (identifiers unquoted) and what follows it, with comments and semicolons removed.
func firstStatement(query string) (toks []string, rest string) {
	var cut int = -1
	lex(query, func(tok string, start, end int, semicolon bool) bool {
		if semicolon {
			if complete(query[:end]) {
				cut = end
				return false
			}
			return true
		}
		if cut < 0 {
			toks = append(toks, tok)
		}
		return true
	})
	if cut < 0 {
		return toks, ""
	}
	var b strings.Builder
	lex(query[cut:], func(tok string, _, _ int, semicolon bool) bool {
		if !semicolon {
			b.WriteString(tok)
			b.WriteByte(' ')
		}
		return true
	})
	return toks, b.String()
}

// complete reports sqlite3_complete(sql).
func complete(sql string) bool {
	tls := libc.NewTLS()
	defer tls.Close()
	p, err := libc.CString(sql)
	if err != nil {
		return false
	}
	defer libc.Xfree(tls, p)
	return sqlite3.Xsqlite3_complete(tls, p) != 0
}

// lex calls fn for each token of SQL text: words, quoted identifiers (unquoted), string
// literals (with their quotes), other characters one at a time. Whitespace and comments are
// skipped. fn returning false stops.
func lex(s string, fn func(tok string, start, end int, semicolon bool) bool) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return
			}
			i += j + 4
		case c == '\'' || c == '"' || c == '`' || c == '[':
			closer := c
			if c == '[' {
				closer = ']'
			}
			j := i + 1
			var b strings.Builder
			for j < len(s) {
				if s[j] == closer {
					if closer != ']' && j+1 < len(s) && s[j+1] == closer {
						b.WriteByte(closer)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			end := min(j+1, len(s))
			tok := b.String()
			if c == '\'' {
				tok = s[i:end]
			}
			if !fn(tok, i, end, false) {
				return
			}
			i = end
		case c == '_' || c == '$' || c >= 0x80 || (c|0x20 >= 'a' && c|0x20 <= 'z') || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] >= 0x80 || (s[j]|0x20 >= 'a' && s[j]|0x20 <= 'z') || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			if !fn(s[i:j], i, j, false) {
				return
			}
			i = j
		default:
			if !fn(s[i:i+1], i, i+1, c == ';') {
				return
			}
			i++
		}
	}
}
