package objstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream stream names: bucket b's objects are the object store "verge_obj_<b>", its
// multipart uploads in progress "verge_objup_<b>" (each upload a record "<id>/upload" and
// its parts "<id>/<n>").
const (
	jsObjectsPrefix = "verge_obj_"
	jsUploadsPrefix = "verge_objup_"
	// hdrMeta carries an object's metadata (JSON) in its JetStream object headers.
	hdrMeta = "Verge-Object"
)

// JetStreamStore is the Store of NATS JetStream object stores, one per bucket, replicated
// as the cluster's other state is: every node reads and writes the same objects.
//
// Listing reads the names of every object of the bucket (JetStream object stores keep no
// order), so it costs in proportion to the bucket's size; a range read skips the bytes
// before its offset by reading them.
type JetStreamStore struct {
	js       jetstream.JetStream
	replicas int

	mu      sync.Mutex
	buckets map[string]*jsBucket
}

// NewJetStreamStore returns the store of buckets on js with replicas copies of each. No
// stream is created before a bucket is first used.
func NewJetStreamStore(js jetstream.JetStream, replicas int) *JetStreamStore {
	return &JetStreamStore{js: js, replicas: max(replicas, 1), buckets: map[string]*jsBucket{}}
}

// Bucket returns bucket name; its object stores are created on first use.
func (s *JetStreamStore) Bucket(ctx context.Context, name string) (Bucket, error) {
	if !ValidBucketName(name) {
		return nil, fmt.Errorf("%w: bucket name %q", ErrInvalid, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		b = &jsBucket{s: s, name: name}
		s.buckets[name] = b
	}
	return b, nil
}

// Close releases nothing: the connection belongs to the cluster node.
func (s *JetStreamStore) Close() error { return nil }

type jsBucket struct {
	s    *JetStreamStore
	name string

	mu      sync.Mutex
	objects jetstream.ObjectStore
	uploads jetstream.ObjectStore
}

// stores returns the bucket's object stores, creating them on first use.
func (b *jsBucket) stores(ctx context.Context) (jetstream.ObjectStore, jetstream.ObjectStore, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.objects != nil {
		return b.objects, b.uploads, nil
	}
	open := func(name, desc string) (jetstream.ObjectStore, error) {
		if _, err := b.s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: name, Description: desc, Replicas: b.s.replicas, Storage: jetstream.FileStorage,
		}); err != nil {
			return nil, err
		}
		// The library makes object stores answer reads from any replica (direct get), and
		// a replica may not have applied a write its leader acknowledged: a Head right
		// after a Put or CompleteUpload could miss the object. Reads go to the stream
		// leader instead, so a bucket reads its own writes (and every node's acknowledged
		// ones). The handle is taken after the change: it reads the stream's config once.
		st, err := b.s.js.Stream(ctx, "OBJ_"+name)
		if err != nil {
			return nil, err
		}
		if cfg := st.CachedInfo().Config; cfg.AllowDirect {
			cfg.AllowDirect = false
			if _, err := b.s.js.UpdateStream(ctx, cfg); err != nil {
				return nil, err
			}
		}
		return b.s.js.ObjectStore(ctx, name)
	}
	objs, err := open(jsObjectsPrefix+b.name, "Verge object storage bucket "+b.name)
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: bucket %s: %w", b.name, err)
	}
	ups, err := open(jsUploadsPrefix+b.name, "Verge multipart uploads of bucket "+b.name)
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: bucket %s: %w", b.name, err)
	}
	b.objects, b.uploads = objs, ups
	return objs, ups, nil
}

func (b *jsBucket) objs(ctx context.Context) (jetstream.ObjectStore, error) {
	o, _, err := b.stores(ctx)
	return o, err
}

// objectOf returns the metadata of a JetStream object.
func objectOf(info *jetstream.ObjectInfo) (*Object, error) {
	var o Object
	if v := info.Headers.Get(hdrMeta); v != "" {
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			return nil, fmt.Errorf("objstore: object %q: bad metadata: %w", info.Name, err)
		}
	}
	o.Key, o.Size = info.Name, int64(info.Size)
	if o.Uploaded.IsZero() {
		o.Uploaded = info.ModTime.UTC()
	}
	return &o, nil
}

func (b *jsBucket) Head(ctx context.Context, key string) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	st, err := b.objs(ctx)
	if err != nil {
		return nil, err
	}
	info, err := st.GetInfo(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	return objectOf(info)
}

func (b *jsBucket) Open(ctx context.Context, key string, offset, length int64) (*Object, io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, nil, err
	}
	st, err := b.objs(ctx)
	if err != nil {
		return nil, nil, err
	}
	r, err := st.Get(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: %w", err)
	}
	info, err := r.Info()
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("objstore: %w", err)
	}
	o, err := objectOf(info)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	if length < 0 {
		length = o.Size - offset
	}
	if offset < 0 || length < 0 || offset+length > o.Size {
		r.Close()
		return nil, nil, fmt.Errorf("%w: range %d+%d beyond %d bytes", ErrInvalid, offset, length, o.Size)
	}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, r, offset); err != nil {
			r.Close()
			return nil, nil, fmt.Errorf("objstore: %w", err)
		}
	}
	return o, &limitedCloser{Reader: io.LimitReader(r, length), c: r}, nil
}

type limitedCloser struct {
	io.Reader
	c io.Closer
}

func (l *limitedCloser) Close() error { return l.c.Close() }

// metaHeader returns the headers that will carry o's metadata once set (see jsPut).
func metaHeader() nats.Header { return nats.Header{} }

// jsPut stores r as name in st with the metadata fin returns once the body has been read and
// checked. JetStream writes an object's metadata after its body, from the headers map given
// at the start: the body's end fills it in (hashReader's verify runs before).
func jsPut(ctx context.Context, st jetstream.ObjectStore, name string, h *hashReader, fin func(h *hashReader) *Object) (*Object, error) {
	hdr := metaHeader()
	var obj *Object
	r := &finishReader{h: h, at: func() error {
		obj = fin(h)
		meta, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		hdr.Set(hdrMeta, string(meta))
		return nil
	}}
	info, err := st.Put(ctx, jetstream.ObjectMeta{Name: name, Headers: hdr}, r)
	if err != nil {
		if r.err != nil {
			return nil, r.err
		}
		return nil, fmt.Errorf("objstore: %w", err)
	}
	if obj == nil {
		return nil, errors.New("objstore: put ended before its body")
	}
	obj.Size = int64(info.Size)
	return obj, nil
}

// finishReader calls at when h ends well; a failing read keeps its error for jsPut.
type finishReader struct {
	h   *hashReader
	at  func() error
	err error
}

func (f *finishReader) Read(p []byte) (int, error) {
	n, err := f.h.Read(p)
	if err == io.EOF {
		if aerr := f.at(); aerr != nil {
			err = aerr
		}
	}
	if err != nil && err != io.EOF {
		f.err = err
	}
	return n, err
}

func (b *jsBucket) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	st, err := b.objs(ctx)
	if err != nil {
		return nil, err
	}
	h := newHashReader(r, MaxPutSize, &o, true)
	return jsPut(ctx, st, key, h, func(h *hashReader) *Object {
		return &Object{Key: key, Size: h.n, ETag: h.md5Hex(), Uploaded: time.Now().UTC(), HTTP: o.HTTP,
			Custom: o.Custom, MD5: h.md5Hex(), SHA256: h.shaHex()}
	})
}

func (b *jsBucket) Delete(ctx context.Context, keys []string) error {
	if len(keys) > MaxDeleteKeys {
		return fmt.Errorf("%w: %d keys exceed %d per delete", ErrInvalid, len(keys), MaxDeleteKeys)
	}
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return err
		}
	}
	st, err := b.objs(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("objstore: %w", err)
		}
	}
	return nil
}

func (b *jsBucket) Keys(ctx context.Context, prefix, after string, yield func(string) bool) error {
	st, err := b.objs(ctx)
	if err != nil {
		return err
	}
	infos, err := st.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	keys := make([]string, 0, len(infos))
	for _, in := range infos {
		if strings.HasPrefix(in.Name, prefix) && in.Name > after {
			keys = append(keys, in.Name)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !yield(k) {
			break
		}
	}
	return nil
}

func (b *jsBucket) CreateUpload(ctx context.Context, key string, o PutOptions) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if err := o.check(); err != nil {
		return "", err
	}
	_, ups, err := b.stores(ctx)
	if err != nil {
		return "", err
	}
	b.expireUploads(ctx, ups)
	id := newUploadID()
	rec, _ := json.Marshal(upload{Key: key, HTTP: o.HTTP, Custom: o.Custom, Created: time.Now().UTC()})
	if _, err := ups.PutBytes(ctx, id+"/upload", rec); err != nil {
		return "", fmt.Errorf("objstore: %w", err)
	}
	return id, nil
}

// expireUploads drops the uploads older than UploadExpiry.
func (b *jsBucket) expireUploads(ctx context.Context, ups jetstream.ObjectStore) {
	infos, err := ups.List(ctx)
	if err != nil {
		return
	}
	old := map[string]bool{}
	for _, in := range infos {
		if id, ok := strings.CutSuffix(in.Name, "/upload"); ok && time.Since(in.ModTime) > UploadExpiry {
			old[id] = true
		}
	}
	for _, in := range infos {
		if id, _, _ := strings.Cut(in.Name, "/"); old[id] {
			ups.Delete(ctx, in.Name)
		}
	}
}

func (b *jsBucket) loadUpload(ctx context.Context, key, id string) (jetstream.ObjectStore, *upload, error) {
	if err := CheckKey(key); err != nil {
		return nil, nil, err
	}
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, nil, ErrNoUpload
	}
	_, ups, err := b.stores(ctx)
	if err != nil {
		return nil, nil, err
	}
	rec, err := ups.GetBytes(ctx, id+"/upload")
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil, ErrNoUpload
	}
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: %w", err)
	}
	var u upload
	if err := json.Unmarshal(rec, &u); err != nil || u.Key != key {
		return nil, nil, ErrNoUpload
	}
	return ups, &u, nil
}

func (b *jsBucket) UploadPart(ctx context.Context, key, id string, n int, r io.Reader, o PutOptions) (Part, error) {
	if err := checkPartNumber(n); err != nil {
		return Part{}, err
	}
	if err := o.check(); err != nil {
		return Part{}, err
	}
	ups, _, err := b.loadUpload(ctx, key, id)
	if err != nil {
		return Part{}, err
	}
	obj, err := jsPut(ctx, ups, id+"/"+strconv.Itoa(n), newHashReader(r, MaxPutSize, &o, false), func(h *hashReader) *Object {
		return &Object{Key: key, Size: h.n, ETag: h.md5Hex(), Uploaded: time.Now().UTC()}
	})
	if err != nil {
		return Part{}, err
	}
	// An abort between the check above and the part's put leaves the part behind: look
	// again, and drop it.
	if _, _, err := b.loadUpload(ctx, key, id); err != nil {
		ups.Delete(ctx, id+"/"+strconv.Itoa(n))
		return Part{}, err
	}
	return Part{Number: n, ETag: obj.ETag, Size: obj.Size}, nil
}

func (b *jsBucket) CompleteUpload(ctx context.Context, key, id string, parts []Part) (*Object, error) {
	ups, u, err := b.loadUpload(ctx, key, id)
	if err != nil {
		return nil, err
	}
	stored := map[int]Part{}
	for _, p := range parts {
		if checkPartNumber(p.Number) != nil {
			continue
		}
		info, err := ups.GetInfo(ctx, id+"/"+strconv.Itoa(p.Number))
		if err != nil {
			continue
		}
		o, err := objectOf(info)
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
	st, err := b.objs(ctx)
	if err != nil {
		return nil, err
	}
	src := &partsReader{ctx: ctx, ups: ups, id: id, parts: all}
	defer src.Close()
	none := PutOptions{}
	obj, err := jsPut(ctx, st, key, newHashReader(src, MaxObjectSize, &none, false), func(h *hashReader) *Object {
		return &Object{Key: key, Size: h.n, ETag: etag, Uploaded: time.Now().UTC(), HTTP: u.HTTP, Custom: u.Custom}
	})
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		ups.Delete(ctx, id+"/"+strconv.Itoa(p.Number))
	}
	b.dropUpload(ctx, ups, id)
	return obj, nil
}

// partsReader reads the parts of an upload one after the other.
type partsReader struct {
	ctx   context.Context
	ups   jetstream.ObjectStore
	id    string
	parts []Part
	cur   io.ReadCloser
}

func (p *partsReader) Read(b []byte) (int, error) {
	for {
		if p.cur == nil {
			if len(p.parts) == 0 {
				return 0, io.EOF
			}
			r, err := p.ups.Get(p.ctx, p.id+"/"+strconv.Itoa(p.parts[0].Number))
			if err != nil {
				return 0, fmt.Errorf("objstore: part %d: %w", p.parts[0].Number, err)
			}
			p.cur, p.parts = r, p.parts[1:]
		}
		n, err := p.cur.Read(b)
		if err == io.EOF {
			p.cur.Close()
			p.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (p *partsReader) Close() error {
	if p.cur != nil {
		return p.cur.Close()
	}
	return nil
}

// dropUpload deletes an upload's record and whatever parts it has.
func (b *jsBucket) dropUpload(ctx context.Context, ups jetstream.ObjectStore, id string) {
	ups.Delete(ctx, id+"/upload")
	if infos, err := ups.List(ctx); err == nil {
		for _, in := range infos {
			if strings.HasPrefix(in.Name, id+"/") {
				ups.Delete(ctx, in.Name)
			}
		}
	}
}

func (b *jsBucket) AbortUpload(ctx context.Context, key, id string) error {
	ups, _, err := b.loadUpload(ctx, key, id)
	if err != nil {
		return err
	}
	b.dropUpload(ctx, ups, id)
	return nil
}
