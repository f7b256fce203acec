package wasm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
)

// instrumentVersion identifies what instrument produces. Bump it whenever instrument's output
// for a given input changes, so that modules instrumented by an earlier Verge are not
// reused from a cache directory (the executable's size and modification time are part of
// the key as well, which catches a rebuilt binary, but not one restored with an old time).
const instrumentVersion = 2

// instrumentedDir is the subdirectory of Config.CacheDir holding instrumented modules, beside
// wazero's compilation cache.
const instrumentedDir = "verge-instrumented"

// memoEntries bounds the instrumented modules kept in memory (the most recently used ones).
const memoEntries = 4

// memoCache keeps the most recent instrumented modules of the process, by cache key.
type memoCache struct {
	sync.Mutex
	keys []string // least recently used first
	code map[string][]byte
}

var memo memoCache

// exeID identifies the running executable (size and modification time), computed once; empty
// when unknown, which disables the on-disk cache.
var exeID = sync.OnceValue(func() string {
	path, err := os.Executable()
	if err != nil {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(fi.Size()))
	binary.LittleEndian.PutUint64(b[8:], uint64(fi.ModTime().UnixNano()))
	return hex.EncodeToString(b[:])
})

// instrumentCached returns instrument(bin), whose SHA-256 is sum, from the process's memory or
// from cacheDir when it was instrumented before (by this executable), and otherwise
// instruments it and keeps the result in both. Instrumenting a 3 MB Go module costs about 15
// ms (50 ms in a process just started); reading it back costs a file read and a checksum.
// Files carry the SHA-256 of their content, checked on reading: a damaged file is
// instrumented again.
func instrumentCached(cacheDir string, bin []byte, sum [32]byte) ([]byte, error) {
	key := cacheKey(sum)
	memo.Lock()
	code, ok := memo.code[key]
	if ok {
		memo.touchLocked(key)
	}
	memo.Unlock()
	if ok {
		return code, nil
	}
	var path string
	if cacheDir != "" && exeID() != "" {
		path = filepath.Join(cacheDir, instrumentedDir, key+".wasm")
		if code, ok := readChecked(path); ok {
			remember(key, code)
			return code, nil
		}
	}
	code, err := instrument(bin)
	if err != nil {
		return nil, err
	}
	remember(key, code)
	if path != "" {
		writeChecked(path, code)
	}
	return code, nil
}

func cacheKey(sum [32]byte) string {
	h := sha256.New()
	var v [4]byte
	binary.LittleEndian.PutUint32(v[:], instrumentVersion)
	h.Write(v[:])
	h.Write([]byte(exeID()))
	h.Write(sum[:])
	return hex.EncodeToString(h.Sum(nil))
}

func remember(key string, code []byte) {
	memo.Lock()
	defer memo.Unlock()
	if memo.code == nil {
		memo.code = map[string][]byte{}
	}
	if _, ok := memo.code[key]; ok {
		memo.touchLocked(key)
		return
	}
	memo.code[key] = code
	memo.keys = append(memo.keys, key)
	if len(memo.keys) > memoEntries {
		delete(memo.code, memo.keys[0])
		memo.keys = memo.keys[1:]
	}
}

// touchLocked makes key the most recently used.
func (m *memoCache) touchLocked(key string) {
	for i, k := range m.keys {
		if k == key {
			m.keys = append(append(m.keys[:i:i], m.keys[i+1:]...), key)
			return
		}
	}
}

// readChecked reads a file written by writeChecked, false when it is missing or damaged.
func readChecked(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < sha256.Size {
		return nil, false
	}
	code, want := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	got := sha256.Sum256(code)
	if !bytes.Equal(got[:], want) {
		return nil, false
	}
	return code, true
}

// writeChecked writes code followed by its SHA-256, through a temporary file renamed into
// place so that readers never see a partial file. Failures are ignored: the cache is an
// optimization.
func writeChecked(path string, code []byte) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return
	}
	sum := sha256.Sum256(code)
	_, err = f.Write(code)
	if err == nil {
		_, err = f.Write(sum[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}
