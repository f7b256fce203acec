package wasm

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

func forgetMemo() {
	memo.Lock()
	memo.keys, memo.code = nil, nil
	memo.Unlock()
}

// TestInstrumentCache: instrumented modules are kept on disk with a checksum, read back by a
// later process (an empty memory cache), and instrumented again when the file is damaged.
func TestInstrumentCache(t *testing.T) {
	dir := t.TempDir()
	bin := loopModule(false, false)
	sum := sha256.Sum256(bin)
	want, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	forgetMemo()
	got, err := instrumentCached(dir, bin, sum)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("first call: %v, same as instrument: %v", err, bytes.Equal(got, want))
	}
	path := filepath.Join(dir, instrumentedDir, cacheKey(sum)+".wasm")
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no cache file: %v", err)
	}
	if !bytes.Equal(file[:len(file)-sha256.Size], want) {
		t.Fatal("cache file does not hold the instrumented module")
	}

	// A new process reads the file: prove it by planting other (checksummed) content.
	planted := append([]byte{}, want...)
	planted = append(planted, 0, 0) // still parses as the same bytes plus junk: only compared
	writeChecked(path, planted)
	forgetMemo()
	if got, _ := instrumentCached(dir, bin, sum); !bytes.Equal(got, planted) {
		t.Fatal("the cache file was not read")
	}
	// The memory cache answers without the file.
	os.Remove(path)
	if got, _ := instrumentCached(dir, bin, sum); !bytes.Equal(got, planted) {
		t.Fatal("the memory cache was not used")
	}

	// A damaged file is instrumented again and rewritten.
	damaged := append([]byte{}, file...)
	damaged[len(damaged)/2] ^= 0xff
	os.WriteFile(path, damaged, 0o644)
	forgetMemo()
	if got, err := instrumentCached(dir, bin, sum); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("damaged file: %v, same as instrument: %v", err, bytes.Equal(got, want))
	}
	if file2, _ := os.ReadFile(path); !bytes.Equal(file2, file) {
		t.Fatal("the damaged file was not rewritten")
	}

	// Without a directory only memory is used.
	forgetMemo()
	if got, err := instrumentCached("", bin, sum); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("no directory: %v", err)
	}
}

func TestInstrumentMemoBounded(t *testing.T) {
	forgetMemo()
	defer forgetMemo()
	for i := range memoEntries + 3 {
		remember(string(rune('a'+i)), []byte{byte(i)})
	}
	memo.Lock()
	n, k := len(memo.code), len(memo.keys)
	_, oldest := memo.code["a"]
	memo.Unlock()
	if n != memoEntries || k != memoEntries || oldest {
		t.Fatalf("memo holds %d entries (%d keys, oldest kept %v), want %d", n, k, oldest, memoEntries)
	}
}
