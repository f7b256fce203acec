package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// MaxStateBytes bounds the state file FileClaims reads.
const MaxStateBytes = 16 << 20

// FileClaims records fired slots in one JSON file (a map from Key to the slot's Unix time),
// for a server without a cluster. Each claim reads the file, compares and writes it back
// (a new file renamed over the old one, synced) under an exclusive lock on a lock file next
// to it, so that two processes on the same data directory (the old and the new process
// of a zero-downtime upgrade) never run one slot twice.
type FileClaims struct {
	path string
	mu   sync.Mutex
}

// NewFileClaims returns claims kept in the file path; its directory is created on the first
// claim.
func NewFileClaims(path string) *FileClaims { return &FileClaims{path: path} }

var _ Claims = (*FileClaims)(nil)

// Claim records slot under key unless an equal or later slot is recorded.
func (f *FileClaims) Claim(ctx context.Context, key string, slot time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	unlock, err := f.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	m, err := f.read()
	if err != nil {
		return false, err
	}
	if last, ok := m[key]; ok && last >= slot.Unix() {
		return false, nil
	}
	m[key] = slot.Unix()
	if err := f.write(m); err != nil {
		return false, err
	}
	return true, nil
}

// Last returns key's recorded slot.
func (f *FileClaims) Last(ctx context.Context, key string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.read()
	if err != nil {
		return time.Time{}, err
	}
	if v, ok := m[key]; ok {
		return time.Unix(v, 0).UTC(), nil
	}
	return time.Time{}, nil
}

// lock takes the exclusive lock on path + ".lock".
func (f *FileClaims) lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(f.path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("locking %s: %w", lf.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		lf.Close()
	}, nil
}

func (f *FileClaims) read() (map[string]int64, error) {
	m := map[string]int64{}
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxStateBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.path, MaxStateBytes)
	}
	if err := json.NewDecoder(fh).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return m, nil
}

func (f *FileClaims) write(m map[string]int64) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
