package cache

import (
	"container/list"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
)

// Disk format: one file per object, objects/<2 hex digits>/<16 hex digits>.obj, holding a
// fixed 32-byte header, the meta and the body:
//
//	"VRGCACH2" | uint32 meta length | uint32 CRC-32C of the meta |
//	uint64 body length | uint32 CRC-32C of the body | uint32 zero | meta as JSON | body
//
// (integers big-endian). A file is written under tmp/ as the response streams in; the body
// length and checksum are filled in once the body is complete and the file is then renamed
// into place, so a crash leaves no partial object behind. Every file checks itself: a file
// whose size, meta checksum or body checksum disagrees with its header is treated as a miss
// and deleted, never served. A revalidation (304) rewrites the file with a new meta, whose
// length may differ: readers locate the body from the header of the file they open, never
// from an offset remembered earlier, and check that it holds the body they expect (same
// length and checksum). The index is rebuilt from the headers at start.
const diskMagic = "VRGCACH2"

// diskHeaderSize is the fixed part of an object file before the meta.
const diskHeaderSize = 32

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt reports an object file that fails its own checks.
var errCorrupt = errors.New("cache: disk object is corrupt")

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

// fileHeader is the fixed part of an object file.
type fileHeader struct {
	metaLen uint32
	metaCRC uint32
	bodyLen int64
	bodyCRC uint32
}

func (h *fileHeader) bodyOff() int64 { return diskHeaderSize + int64(h.metaLen) }

func (h *fileHeader) encode(b []byte) {
	copy(b, diskMagic)
	binary.BigEndian.PutUint32(b[8:], h.metaLen)
	binary.BigEndian.PutUint32(b[12:], h.metaCRC)
	binary.BigEndian.PutUint64(b[16:], uint64(h.bodyLen))
	binary.BigEndian.PutUint32(b[24:], h.bodyCRC)
	binary.BigEndian.PutUint32(b[28:], 0)
}

// decodeHeader checks and decodes the fixed header of an object file.
func decodeHeader(b []byte) (fileHeader, error) {
	if len(b) < diskHeaderSize || string(b[:8]) != diskMagic {
		return fileHeader{}, fmt.Errorf("not a cache object: %w", errCorrupt)
	}
	h := fileHeader{
		metaLen: binary.BigEndian.Uint32(b[8:]),
		metaCRC: binary.BigEndian.Uint32(b[12:]),
		bodyLen: int64(binary.BigEndian.Uint64(b[16:])),
		bodyCRC: binary.BigEndian.Uint32(b[24:]),
	}
	if h.metaLen > maxMetaSize || h.bodyLen < 0 || binary.BigEndian.Uint32(b[28:]) != 0 {
		return fileHeader{}, fmt.Errorf("bad header: %w", errCorrupt)
	}
	return h, nil
}

// readHeader reads and checks the fixed header of an open object file. A file shorter than
// its header says is caught by the reads that follow.
func readHeader(f *os.File) (fileHeader, error) {
	var b [diskHeaderSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("short file: %w", errCorrupt)
		}
		return fileHeader{}, err
	}
	return decodeHeader(b[:])
}

// firstReadSize is how much of an object file readMeta reads at once.
const firstReadSize = 4096

// firstBufs are readMeta's buffers for a file's first bytes, reused across disk hits: the
// meta decoded from them copies what it keeps.
var firstBufs = sync.Pool{New: func() any { return new([firstReadSize]byte) }}

// readMeta reads and checks the header and meta of an object file, and that the file has
// the size its header says; it returns the meta and the header.
func readMeta(path string) (*meta, fileHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileHeader{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileHeader{}, err
	}
	// One read covers the header and, usually, the meta.
	fb := firstBufs.Get().(*[firstReadSize]byte)
	defer firstBufs.Put(fb)
	first := fb[:min(fi.Size(), firstReadSize)]
	if _, err := f.ReadAt(first, 0); err != nil && err != io.EOF {
		return nil, fileHeader{}, fmt.Errorf("cache: %s: %w", path, err)
	}
	h, err := decodeHeader(first)
	if err == nil && fi.Size() != h.bodyOff()+h.bodyLen {
		err = fmt.Errorf("size %d, header says %d: %w", fi.Size(), h.bodyOff()+h.bodyLen, errCorrupt)
	}
	if err != nil {
		return nil, h, fmt.Errorf("cache: %s: %w", path, err)
	}
	var buf []byte
	if end := h.bodyOff(); end <= int64(len(first)) {
		buf = first[diskHeaderSize:end]
	} else {
		buf = make([]byte, h.metaLen)
		if _, err := f.ReadAt(buf, diskHeaderSize); err != nil {
			return nil, h, fmt.Errorf("cache: %s: %w", path, err)
		}
	}
	if crc32.Checksum(buf, castagnoli) != h.metaCRC {
		return nil, h, fmt.Errorf("cache: %s: meta checksum: %w", path, errCorrupt)
	}
	m := new(meta)
	if err := json.Unmarshal(buf, m); err != nil {
		return nil, h, fmt.Errorf("cache: %s: %w: %w", path, errCorrupt, err)
	}
	if m.BodyLen >= 0 && m.BodyLen != h.bodyLen {
		return nil, h, fmt.Errorf("cache: %s: body length %d, meta says %d: %w", path, h.bodyLen, m.BodyLen, errCorrupt)
	}
	return m, h, nil
}

// encodeMeta returns the header (body length and checksum still zero) and meta of a file.
func encodeMeta(m *meta) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(js) > maxMetaSize {
		return nil, errors.New("cache: disk tier: response head too large")
	}
	out := make([]byte, diskHeaderSize, diskHeaderSize+len(js))
	h := fileHeader{metaLen: uint32(len(js)), metaCRC: crc32.Checksum(js, castagnoli)}
	h.encode(out)
	return append(out, js...), nil
}

// diskWriter writes one object file as its body streams in.
type diskWriter struct {
	t   *diskTier
	f   *os.File
	m   *meta
	n   int64  // body bytes written
	crc uint32 // of the body bytes written
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
		var n int
		n, w.err = w.f.Write(p)
		w.crc = crc32.Update(w.crc, castagnoli, p[:n])
		w.n += int64(n)
	}
}

func (w *diskWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// commit seals the file (body length and checksum in its header) and moves it into place,
// then evicts older objects over the size limit.
func (w *diskWriter) commit() error {
	if w.err != nil {
		w.abort()
		return w.err
	}
	var tail [12]byte
	binary.BigEndian.PutUint64(tail[:], uint64(w.n))
	binary.BigEndian.PutUint32(tail[8:], w.crc)
	_, err := w.f.WriteAt(tail[:], 16)
	var fi os.FileInfo
	if err == nil {
		fi, err = w.f.Stat()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
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

// load reads an object's meta and returns its body as a file-backed body. A file that fails
// its checks is deleted and reported as absent.
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
	m, h, err := readMeta(e.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			t.removeEntry(e)
			return nil, nil, nil
		}
		if errors.Is(err, errCorrupt) {
			t.removeEntry(e)
		}
		return nil, nil, err
	}
	return m, fileBody(t, e, h.bodyLen, h.bodyCRC), nil
}

// removeEntry deletes e's file if e is still the hash's current entry (a newer file may have
// replaced it meanwhile).
func (t *diskTier) removeEntry(e *diskEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries[e.hash] == e {
		t.removeLocked(e)
	}
}

// open opens the file of a file-backed body and checks it still holds that body; it returns
// the body's offset in the file.
func (t *diskTier) open(b *body) (*os.File, int64, error) {
	f, err := os.Open(b.path)
	if err != nil {
		return nil, 0, err
	}
	h, err := readHeader(f)
	if err == nil && (h.bodyLen != b.size || h.bodyCRC != b.crc) {
		err = fmt.Errorf("file replaced: %w", errCorrupt)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("cache: %s: %w", b.path, err)
	}
	return f, h.bodyOff(), nil
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
