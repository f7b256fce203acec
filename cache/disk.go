package cache

import (
	"bufio"
	"container/list"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
)

// Disk format: one file per object, objects/<2 hex digits>/<16 hex digits>.obj, holding
//
//	"VRGCACH1" | uint32 big-endian length of the meta | meta as JSON | body
//
// A file is written under tmp/ as the response streams in and renamed into place once the
// body is complete, so a crash leaves no partial object behind; the body length is the file
// size minus the header. The index is rebuilt from the headers at start.
const diskMagic = "VRGCACH1"

const maxMetaSize = 1 << 20

// diskTier stores objects as files, bounded in total size with least-recently-used eviction.
type diskTier struct {
	dir string
	max int64

	mu      sync.Mutex
	entries map[uint64]*diskEntry
	lru     list.List // of *diskEntry, most recently used at the front
	size    int64

	onEvict func(e *diskEntry) // called without mu held
}

// diskEntry is one object file.
type diskEntry struct {
	hash    uint64
	primary uint64
	path    string
	size    int64
	url     string
	tags    []string
	vary    []string
	elem    *list.Element
}

func openDisk(dir string, max int64) (*diskTier, []*meta, error) {
	t := &diskTier{dir: dir, max: max, entries: map[uint64]*diskEntry{}}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o750); err != nil {
		return nil, nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o750); err != nil {
		return nil, nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	// Objects being written when the process stopped are incomplete: drop them.
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range tmps {
		os.Remove(filepath.Join(dir, "tmp", e.Name()))
	}
	type found struct {
		m     *meta
		path  string
		size  int64
		mtime int64
	}
	var all []found
	files, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*.obj"))
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		m, _, err := readMeta(p)
		if err != nil {
			os.Remove(p)
			continue
		}
		all = append(all, found{m, p, fi.Size(), fi.ModTime().UnixNano()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime > all[j].mtime })
	metas := make([]*meta, 0, len(all))
	for _, f := range all {
		e := &diskEntry{hash: f.m.Hash, primary: f.m.Primary, path: f.path, size: f.size, url: f.m.URL, tags: f.m.Tags, vary: f.m.Vary}
		e.elem = t.lru.PushBack(e)
		t.entries[e.hash] = e
		t.size += e.size
		metas = append(metas, f.m)
	}
	return t, metas, nil
}

func (t *diskTier) pathOf(hash uint64) string {
	h := strconv.FormatUint(hash, 16)
	for len(h) < 16 {
		h = "0" + h
	}
	return filepath.Join(t.dir, "objects", h[:2], h+".obj")
}

// readMeta reads the header of an object file; it returns the meta and the body offset.
func readMeta(path string) (*meta, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	var head [12]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, 0, fmt.Errorf("cache: %s: %w", path, err)
	}
	if string(head[:8]) != diskMagic {
		return nil, 0, fmt.Errorf("cache: %s: not a cache object", path)
	}
	n := binary.BigEndian.Uint32(head[8:])
	if n > maxMetaSize {
		return nil, 0, fmt.Errorf("cache: %s: meta too large", path)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, 0, fmt.Errorf("cache: %s: %w", path, err)
	}
	m := new(meta)
	if err := json.Unmarshal(buf, m); err != nil {
		return nil, 0, fmt.Errorf("cache: %s: %w", path, err)
	}
	return m, int64(12 + n), nil
}

func encodeMeta(m *meta) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 12, 12+len(js))
	copy(out, diskMagic)
	binary.BigEndian.PutUint32(out[8:], uint32(len(js)))
	return append(out, js...), nil
}

// diskWriter writes one object file as its body streams in.
type diskWriter struct {
	t   *diskTier
	f   *os.File
	m   *meta
	err error
}

func (t *diskTier) create(m *meta) (*diskWriter, error) {
	head, err := encodeMeta(m)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(t.dir, "tmp"), "obj-*")
	if err != nil {
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	w := &diskWriter{t: t, f: f, m: m}
	if _, err := f.Write(head); err != nil {
		w.abort()
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	return w, nil
}

func (w *diskWriter) write(p []byte) {
	if w.err == nil {
		_, w.err = w.f.Write(p)
	}
}

func (w *diskWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// commit moves the complete file into place and evicts older objects over the size limit.
func (w *diskWriter) commit() error {
	if w.err != nil {
		w.abort()
		return w.err
	}
	fi, err := w.f.Stat()
	if err == nil {
		err = w.f.Close()
	} else {
		w.f.Close()
	}
	if err != nil {
		os.Remove(w.f.Name())
		return err
	}
	t := w.t
	path := t.pathOf(w.m.Hash)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := os.Rename(w.f.Name(), path); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	if old := t.entries[w.m.Hash]; old != nil {
		t.size -= old.size
		t.lru.Remove(old.elem)
	}
	e := &diskEntry{hash: w.m.Hash, primary: w.m.Primary, path: path, size: fi.Size(), url: w.m.URL, tags: w.m.Tags, vary: w.m.Vary}
	e.elem = t.lru.PushFront(e)
	t.entries[e.hash] = e
	t.size += e.size
	var evicted []*diskEntry
	for t.size > t.max && t.lru.Len() > 1 {
		old := t.lru.Back().Value.(*diskEntry)
		t.removeLocked(old)
		evicted = append(evicted, old)
	}
	if t.onEvict != nil && len(evicted) > 0 {
		go func() {
			for _, e := range evicted {
				t.onEvict(e)
			}
		}()
	}
	return nil
}

func (t *diskTier) removeLocked(e *diskEntry) {
	delete(t.entries, e.hash)
	t.lru.Remove(e.elem)
	t.size -= e.size
	os.Remove(e.path)
}

// remove deletes an object file, reporting whether there was one.
func (t *diskTier) remove(hash uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[hash]; e != nil {
		t.removeLocked(e)
		return true
	}
	return false
}

func (t *diskTier) has(hash uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.entries[hash] != nil
}

// load reads an object's meta and returns its body as a file-backed body.
func (t *diskTier) load(hash uint64) (*meta, *body, error) {
	t.mu.Lock()
	e := t.entries[hash]
	if e != nil {
		t.lru.MoveToFront(e.elem)
	}
	t.mu.Unlock()
	if e == nil {
		return nil, nil, nil
	}
	m, off, err := readMeta(e.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			t.remove(hash)
			return nil, nil, nil
		}
		return nil, nil, err
	}
	return m, fileBody(e.path, off, e.size-off), nil
}

// usage returns the bytes held on disk.
func (t *diskTier) usage() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.size
}

// list returns a snapshot of the entries, for purges.
func (t *diskTier) list() []*diskEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*diskEntry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e)
	}
	return out
}
