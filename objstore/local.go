package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Local is the Store of files under a directory: <dir>/<bucket>/objects holds the objects,
// <dir>/<bucket>/uploads the multipart uploads in progress, <dir>/<bucket>/tmp the files
// being written.
//
// A key never becomes a path: its bytes are written in hex, in path components of 128 hex
// digits (64 bytes of key) each, so that no key can name a file outside its bucket, and the
// directory tree sorts like the keys. An object is one file: its body, then its metadata
// (JSON), the metadata's length and a magic number. A put writes a temporary file, syncs
// it and renames it into place: readers see the old object or the new one, whole.
type Local struct {
	dir string

	mu      sync.Mutex
	buckets map[string]*localBucket
}

// OpenLocal returns the store of files under dir (created when needed).
func OpenLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	return &Local{dir: dir, buckets: map[string]*localBucket{}}, nil
}

// Bucket opens bucket name, creating its directories.
func (l *Local) Bucket(ctx context.Context, name string) (Bucket, error) {
	if !ValidBucketName(name) {
		return nil, fmt.Errorf("%w: bucket name %q", ErrInvalid, name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[name]; b != nil {
		return b, nil
	}
	b := &localBucket{dir: filepath.Join(l.dir, name)}
	for _, d := range []string{b.objects(), b.tmp(), b.uploads()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("objstore: bucket %s: %w", name, err)
		}
	}
	// Files of puts that never finished (a crash) are garbage.
	if ents, err := os.ReadDir(b.tmp()); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(b.tmp(), e.Name()))
		}
	}
	l.buckets[name] = b
	return b, nil
}

// Close releases nothing: every file is closed after each operation.
func (l *Local) Close() error { return nil }

type localBucket struct{ dir string }

func (b *localBucket) objects() string { return filepath.Join(b.dir, "objects") }
func (b *localBucket) tmp() string     { return filepath.Join(b.dir, "tmp") }
func (b *localBucket) uploads() string { return filepath.Join(b.dir, "uploads") }

// keyChunk is the bytes of key per path component.
const keyChunk = 64

// objectSuffix ends an object's file name; directories have none.
const objectSuffix = ".o"

// path returns the file of key (a valid key).
func (b *localBucket) path(key string) string {
	parts := []string{b.objects()}
	for len(key) > keyChunk {
		parts = append(parts, hex.EncodeToString([]byte(key[:keyChunk])))
		key = key[keyChunk:]
	}
	parts = append(parts, hex.EncodeToString([]byte(key))+objectSuffix)
	return filepath.Join(parts...)
}

// Trailer: u32 metadata length, then the magic.
var localMagic = []byte("VRGOBJ01")

const trailerLen = 4 + 8

// readMeta reads the metadata of the object file f.
func readMeta(f *os.File) (*Object, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var tr [trailerLen]byte
	if st.Size() < trailerLen {
		return nil, fmt.Errorf("objstore: %s: truncated object file", f.Name())
	}
	if _, err := f.ReadAt(tr[:], st.Size()-trailerLen); err != nil {
		return nil, err
	}
	n := int64(binary.LittleEndian.Uint32(tr[:4]))
	if !bytes.Equal(tr[4:], localMagic) || n > st.Size()-trailerLen {
		return nil, fmt.Errorf("objstore: %s: not an object file", f.Name())
	}
	meta := make([]byte, n)
	if _, err := f.ReadAt(meta, st.Size()-trailerLen-n); err != nil {
		return nil, err
	}
	var o Object
	if err := json.Unmarshal(meta, &o); err != nil {
		return nil, fmt.Errorf("objstore: %s: %w", f.Name(), err)
	}
	if o.Size != st.Size()-trailerLen-n {
		return nil, fmt.Errorf("objstore: %s: size mismatch", f.Name())
	}
	return &o, nil
}

// writeMeta appends o and the trailer to f.
func writeMeta(f *os.File, o *Object) error {
	meta, err := json.Marshal(o)
	if err != nil {
		return err
	}
	meta = binary.LittleEndian.AppendUint32(meta, uint32(len(meta)))
	meta = append(meta, localMagic...)
	_, err = f.Write(meta)
	return err
}

func (b *localBucket) open(key string) (*os.File, *Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, nil, err
	}
	f, err := os.Open(b.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: %w", err)
	}
	o, err := readMeta(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, o, nil
}

func (b *localBucket) Head(ctx context.Context, key string) (*Object, error) {
	f, o, err := b.open(key)
	if f != nil {
		f.Close()
	}
	return o, err
}

func (b *localBucket) Open(ctx context.Context, key string, offset, length int64) (*Object, io.ReadCloser, error) {
	f, o, err := b.open(key)
	if f == nil {
		return nil, nil, err
	}
	if length < 0 {
		length = o.Size - offset
	}
	if offset < 0 || length < 0 || offset+length > o.Size {
		f.Close()
		return nil, nil, fmt.Errorf("%w: range %d+%d beyond %d bytes", ErrInvalid, offset, length, o.Size)
	}
	return o, &fileSection{SectionReader: io.NewSectionReader(f, offset, length), f: f}, nil
}

// fileSection reads part of an open file and closes it.
type fileSection struct {
	*io.SectionReader
	f *os.File
}

func (s *fileSection) Close() error { return s.f.Close() }

// copyBuf is the buffer size of file copies.
const copyBuf = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// writerOnly hides a file's ReadFrom, so that io.CopyBuffer uses the pooled buffer.
type writerOnly struct{ io.Writer }

// create writes a new object file in tmp through fill, then its metadata, and syncs it.
func (b *localBucket) create(fill func(f *os.File) (*Object, error)) (string, *Object, error) {
	f, err := os.CreateTemp(b.tmp(), "put-*")
	if err != nil {
		return "", nil, fmt.Errorf("objstore: %w", err)
	}
	name := f.Name()
	o, err := fill(f)
	if err == nil {
		err = writeMeta(f, o)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", nil, err
	}
	return name, o, nil
}

// commit renames the written file tmp into key's place and syncs the directory.
func (b *localBucket) commit(tmp, key string) error {
	dst := b.path(key)
	dir := filepath.Dir(dst)
	var err error
	for range 3 { // a concurrent delete may remove the directory just made
		if err = os.MkdirAll(dir, 0o750); err != nil {
			break
		}
		if err = os.Rename(tmp, dst); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("objstore: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (b *localBucket) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	tmp, obj, err := b.create(func(f *os.File) (*Object, error) {
		h := newHashReader(ctxReader{ctx, r}, MaxPutSize, &o, true)
		buf := bufPool.Get().(*[]byte)
		defer bufPool.Put(buf)
		n, err := io.CopyBuffer(writerOnly{f}, h, *buf)
		if err != nil {
			return nil, err
		}
		return &Object{Key: key, Size: n, ETag: h.md5Hex(), Uploaded: time.Now().UTC(), HTTP: o.HTTP,
			Custom: o.Custom, MD5: h.md5Hex(), SHA256: h.shaHex()}, nil
	})
	if err != nil {
		return nil, err
	}
	if err := b.commit(tmp, key); err != nil {
		return nil, err
	}
	return obj, nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (b *localBucket) Delete(ctx context.Context, keys []string) error {
	if len(keys) > MaxDeleteKeys {
		return fmt.Errorf("%w: %d keys exceed %d per delete", ErrInvalid, len(keys), MaxDeleteKeys)
	}
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return err
		}
	}
	for _, k := range keys {
		p := b.path(k)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("objstore: %w", err)
		}
		// Drop the directories left empty (a put racing with this one makes them again).
		for dir := filepath.Dir(p); dir != b.objects(); dir = filepath.Dir(dir) {
			if os.Remove(dir) != nil {
				break
			}
		}
	}
	return nil
}

// entry is a directory entry of the object tree: the key bytes it stands for.
type entry struct {
	key string
	dir bool
}

func (b *localBucket) Keys(ctx context.Context, prefix, after string, yield func(string) bool) error {
	_, err := b.walk(ctx, b.objects(), "", prefix, after, yield)
	return err
}

// walk visits the keys under dir (whose keys start with base) in order; it returns false
// when the walk is to stop.
func (b *localBucket) walk(ctx context.Context, dir, base, prefix, after string, yield func(string) bool) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("objstore: %w", err)
	}
	list := make([]entry, 0, len(ents))
	for _, e := range ents {
		name, isObj := strings.CutSuffix(e.Name(), objectSuffix)
		k, err := hex.DecodeString(name)
		if err != nil || isObj == e.IsDir() {
			continue
		}
		list = append(list, entry{key: base + string(k), dir: e.IsDir()})
	}
	slices.SortFunc(list, func(a, b entry) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		if a.dir == b.dir {
			return 0
		}
		if a.dir {
			return 1
		}
		return -1
	})
	for _, e := range list {
		// Keys under e start with e.key (a directory's are longer).
		n := min(len(e.key), len(prefix))
		if c := strings.Compare(e.key[:n], prefix[:n]); c < 0 {
			continue
		} else if c > 0 {
			return false, nil // past the prefix: every later key is too
		}
		if !e.dir {
			if e.key > after && strings.HasPrefix(e.key, prefix) {
				if !yield(e.key) {
					return false, nil
				}
			}
			continue
		}
		m := min(len(e.key), len(after))
		if e.key[:m] < after[:m] {
			continue // every key under it sorts before after
		}
		name := hex.EncodeToString([]byte(e.key[len(base):]))
		more, err := b.walk(ctx, filepath.Join(dir, name), e.key, prefix, after, yield)
		if err != nil || !more {
			return more, err
		}
	}
	return true, nil
}

// upload is a multipart upload's record (uploads/<id>/upload.json).
type upload struct {
	Key     string            `json:"key"`
	HTTP    HTTPMetadata      `json:"http,omitzero"`
	Custom  map[string]string `json:"custom,omitempty"`
	Created time.Time         `json:"created"`
}

// uploadDir returns the directory of upload id, checking the id's form (hex).
func (b *localBucket) uploadDir(id string) (string, error) {
	if len(id) != 32 {
		return "", ErrNoUpload
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", ErrNoUpload
	}
	return filepath.Join(b.uploads(), id), nil
}

func newUploadID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (b *localBucket) CreateUpload(ctx context.Context, key string, o PutOptions) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if err := o.check(); err != nil {
		return "", err
	}
	b.expireUploads()
	id := newUploadID()
	dir := filepath.Join(b.uploads(), id)
	if err := os.Mkdir(dir, 0o750); err != nil {
		return "", fmt.Errorf("objstore: %w", err)
	}
	rec, _ := json.Marshal(upload{Key: key, HTTP: o.HTTP, Custom: o.Custom, Created: time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(dir, "upload.json"), rec, 0o640); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("objstore: %w", err)
	}
	return id, nil
}

// expireUploads drops uploads older than UploadExpiry.
func (b *localBucket) expireUploads() {
	ents, _ := os.ReadDir(b.uploads())
	for _, e := range ents {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > UploadExpiry {
			os.RemoveAll(filepath.Join(b.uploads(), e.Name()))
		}
	}
}

// loadUpload reads upload id of key.
func (b *localBucket) loadUpload(key, id string) (string, *upload, error) {
	if err := CheckKey(key); err != nil {
		return "", nil, err
	}
	dir, err := b.uploadDir(id)
	if err != nil {
		return "", nil, err
	}
	rec, err := os.ReadFile(filepath.Join(dir, "upload.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, ErrNoUpload
	}
	if err != nil {
		return "", nil, fmt.Errorf("objstore: %w", err)
	}
	var u upload
	if err := json.Unmarshal(rec, &u); err != nil {
		return "", nil, fmt.Errorf("objstore: upload %s: %w", id, err)
	}
	if u.Key != key {
		return "", nil, ErrNoUpload
	}
	return dir, &u, nil
}

func partFile(dir string, n int) string { return filepath.Join(dir, fmt.Sprintf("%05d.part", n)) }

func (b *localBucket) UploadPart(ctx context.Context, key, id string, n int, r io.Reader, o PutOptions) (Part, error) {
	if err := checkPartNumber(n); err != nil {
		return Part{}, err
	}
	if err := o.check(); err != nil {
		return Part{}, err
	}
	dir, _, err := b.loadUpload(key, id)
	if err != nil {
		return Part{}, err
	}
	tmp, obj, err := b.create(func(f *os.File) (*Object, error) {
		h := newHashReader(ctxReader{ctx, r}, MaxPutSize, &o, false)
		buf := bufPool.Get().(*[]byte)
		defer bufPool.Put(buf)
		size, err := io.CopyBuffer(writerOnly{f}, h, *buf)
		if err != nil {
			return nil, err
		}
		return &Object{Key: key, Size: size, ETag: h.md5Hex(), Uploaded: time.Now().UTC()}, nil
	})
	if err != nil {
		return Part{}, err
	}
	if err := os.Rename(tmp, partFile(dir, n)); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return Part{}, ErrNoUpload // aborted meanwhile
		}
		return Part{}, fmt.Errorf("objstore: %w", err)
	}
	return Part{Number: n, ETag: obj.ETag, Size: obj.Size}, nil
}

func (b *localBucket) CompleteUpload(ctx context.Context, key, id string, parts []Part) (*Object, error) {
	dir, u, err := b.loadUpload(key, id)
	if err != nil {
		return nil, err
	}
	stored := map[int]Part{}
	files := map[int]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, p := range parts {
		if checkPartNumber(p.Number) != nil || files[p.Number] != nil {
			continue
		}
		f, err := os.Open(partFile(dir, p.Number))
		if err != nil {
			continue
		}
		files[p.Number] = f
		o, err := readMeta(f)
		if err != nil {
			return nil, err
		}
		stored[p.Number] = Part{Number: p.Number, ETag: o.ETag, Size: o.Size}
	}
	if err := checkParts(parts, stored); err != nil {
		return nil, err
	}
	all := make([]Part, len(parts))
	for i, p := range parts {
		all[i] = stored[p.Number]
	}
	etag, err := multipartETag(all)
	if err != nil {
		return nil, err
	}
	tmp, obj, err := b.create(func(f *os.File) (*Object, error) {
		var size int64
		for _, p := range all {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// A file-to-file copy: the kernel moves the bytes where it can.
			n, err := io.Copy(f, io.NewSectionReader(files[p.Number], 0, p.Size))
			if err != nil {
				return nil, err
			}
			size += n
		}
		return &Object{Key: key, Size: size, ETag: etag, Uploaded: time.Now().UTC(), HTTP: u.HTTP, Custom: u.Custom}, nil
	})
	if err != nil {
		return nil, err
	}
	if err := b.commit(tmp, key); err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	return obj, nil
}

func (b *localBucket) AbortUpload(ctx context.Context, key, id string) error {
	dir, _, err := b.loadUpload(key, id)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
