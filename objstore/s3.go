package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options locate a bucket of an S3-compatible service.
type S3Options struct {
	// Endpoint is the service's URL: https://host[:port] (http:// for a plain-text one, on
	// a private network). Required.
	Endpoint string
	// Region is the bucket's region. Empty means us-east-1.
	Region string
	// Bucket is the remote bucket; it must exist. Required.
	Bucket string
	// AccessKey and SecretKey sign the requests (AWS Signature Version 4).
	AccessKey, SecretKey string
	// PathStyle addresses the bucket in the path (https://host/bucket/key) rather than in
	// the host name (https://bucket.host/key), as MinIO and most self-hosted services want.
	PathStyle bool
	// SpoolDir holds multipart parts while they are counted before their upload (S3 needs
	// a part's size first). Empty means the system's temporary directory.
	SpoolDir string
}

// s3PartSize is the part size of puts of unknown length: the memory one put buffers.
const s3PartSize = 8 << 20

// S3Bucket is a Bucket on an S3-compatible service. It is also a Store of itself, for a
// binding that names it (every bucket name opens it).
//
// An object's HTTP metadata is set on the S3 object as header fields, and Verge's own
// metadata (custom metadata, digests, the HTTP metadata as given) travels in the user
// metadata field x-amz-meta-verge, so S3 clients see ordinary objects.
type S3Bucket struct {
	o    S3Options
	c    minio.Core
	desc string
}

var _ Store = (*S3Bucket)(nil)

// OpenS3 returns the bucket o names. No request is sent before the first operation.
func OpenS3(o S3Options) (*S3Bucket, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%w: s3 endpoint %q: want http(s)://host[:port]", ErrInvalid, o.Endpoint)
	}
	if o.Bucket == "" {
		return nil, fmt.Errorf("%w: s3 bucket is required", ErrInvalid)
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	lookup := minio.BucketLookupDNS
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	cl, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       o.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: s3: %w", err)
	}
	sum := sha256.Sum256([]byte(o.SecretKey))
	desc := fmt.Sprintf("s3 %s %s %s %v %s %x", o.Endpoint, o.Region, o.Bucket, o.PathStyle, o.AccessKey, sum[:8])
	return &S3Bucket{o: o, c: minio.Core{Client: cl}, desc: desc}, nil
}

// ConfigKey identifies the bucket's settings (the secret key only by a digest), so that a
// deployment whose settings did not change is recognised.
func (b *S3Bucket) ConfigKey() string { return b.desc }

// Bucket returns b itself.
func (b *S3Bucket) Bucket(context.Context, string) (Bucket, error) { return b, nil }

// Close releases nothing.
func (b *S3Bucket) Close() error { return nil }

// s3Meta is the user metadata field of Verge's metadata.
const s3Meta = "Verge"

// s3Record is what x-amz-meta-verge holds.
type s3Record struct {
	HTTP   HTTPMetadata      `json:"http,omitzero"`
	Custom map[string]string `json:"custom,omitempty"`
	MD5    string            `json:"md5,omitempty"`
	SHA256 string            `json:"sha256,omitempty"`
}

func s3Missing(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == 404 || r.Code == "NoSuchKey"
}

func s3Err(err error) error {
	r := minio.ToErrorResponse(err)
	if r.Code == "NoSuchUpload" {
		return ErrNoUpload
	}
	if r.Code == "InvalidPart" || r.Code == "InvalidPartOrder" || r.Code == "EntityTooSmall" {
		return fmt.Errorf("%w: %s", ErrInvalid, r.Message)
	}
	return fmt.Errorf("objstore: s3: %w", err)
}

// objectOfS3 returns the metadata of an S3 object.
func objectOfS3(key string, info minio.ObjectInfo) *Object {
	o := &Object{Key: key, Size: info.Size, ETag: trimQuotes(info.ETag), Uploaded: info.LastModified.UTC()}
	v := info.UserMetadata[s3Meta]
	if v == "" {
		v = info.Metadata.Get("X-Amz-Meta-" + s3Meta)
	}
	var rec s3Record
	if b, err := base64.RawURLEncoding.DecodeString(v); err == nil && json.Unmarshal(b, &rec) == nil {
		o.HTTP, o.Custom, o.MD5, o.SHA256 = rec.HTTP, rec.Custom, rec.MD5, rec.SHA256
	} else {
		o.HTTP.ContentType = info.ContentType
	}
	return o
}

func (b *S3Bucket) Head(ctx context.Context, key string) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	info, err := b.c.StatObject(ctx, b.o.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if s3Missing(err) {
			return nil, nil
		}
		return nil, s3Err(err)
	}
	return objectOfS3(key, info), nil
}

func (b *S3Bucket) Open(ctx context.Context, key string, offset, length int64) (*Object, io.ReadCloser, error) {
	o, err := b.Head(ctx, key)
	if o == nil || err != nil {
		return nil, nil, err
	}
	if length < 0 {
		length = o.Size - offset
	}
	if offset < 0 || length < 0 || offset+length > o.Size {
		return nil, nil, fmt.Errorf("%w: range %d+%d beyond %d bytes", ErrInvalid, offset, length, o.Size)
	}
	if length == 0 {
		return o, io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(offset, offset+length-1); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// The object read must be the one described: a replacement in between fails the read.
	opts.SetMatchETag(o.ETag)
	r, _, _, err := b.c.GetObject(ctx, b.o.Bucket, key, opts)
	if err != nil {
		if s3Missing(err) {
			return nil, nil, nil
		}
		return nil, nil, s3Err(err)
	}
	return o, r, nil
}

// putOptions returns the S3 options of an object with o's metadata and the digests.
func s3PutOptions(o *PutOptions, md5, sha string) minio.PutObjectOptions {
	rec, _ := json.Marshal(s3Record{HTTP: o.HTTP, Custom: o.Custom, MD5: md5, SHA256: sha})
	p := minio.PutObjectOptions{
		ContentType: o.HTTP.ContentType, ContentEncoding: o.HTTP.ContentEncoding,
		ContentDisposition: o.HTTP.ContentDisposition, ContentLanguage: o.HTTP.ContentLanguage,
		CacheControl: o.HTTP.CacheControl,
		UserMetadata: map[string]string{s3Meta: base64.RawURLEncoding.EncodeToString(rec)},
		PartSize:     s3PartSize,
		NumThreads:   1,
		// Over plain HTTP minio-go would sign each chunk (aws-chunked encoding), which
		// S3-compatible servers do not all decode; the payload's integrity is checked by
		// Verge's own digests and, over HTTPS, by TLS.
		DisableContentSha256: true,
	}
	if t, err := time.Parse(httpTime, o.HTTP.Expires); err == nil {
		p.Expires = t
	}
	return p
}

// Put streams r to S3 (a multipart upload of s3PartSize parts when the body is larger than
// one). The body's checksums are checked as it ends, before the upload completes: a
// mismatch aborts it and nothing is stored. The digests are not recorded on S3 (its
// metadata goes out before the body); the ETag of a one-part object is its MD5 there too.
func (b *S3Bucket) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	fr := &finishReader{h: newHashReader(ctxReader{ctx, r}, MaxPutSize, &o, o.SHA256 != nil), at: func() error { return nil }}
	if _, err := b.c.Client.PutObject(ctx, b.o.Bucket, key, fr, -1, s3PutOptions(&o, "", "")); err != nil {
		if fr.err != nil {
			return nil, fr.err
		}
		return nil, s3Err(err)
	}
	obj, err := b.Head(ctx, key)
	if err == nil && obj == nil {
		err = errors.New("objstore: s3: stored object not found")
	}
	return obj, err
}

func (b *S3Bucket) Delete(ctx context.Context, keys []string) error {
	if len(keys) > MaxDeleteKeys {
		return fmt.Errorf("%w: %d keys exceed %d per delete", ErrInvalid, len(keys), MaxDeleteKeys)
	}
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := b.c.RemoveObject(ctx, b.o.Bucket, k, minio.RemoveObjectOptions{}); err != nil && !s3Missing(err) {
			return s3Err(err)
		}
	}
	return nil
}

func (b *S3Bucket) Keys(ctx context.Context, prefix, after string, yield func(string) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// S3 lists in the byte order of the keys' UTF-8, as the other stores do.
	for info := range b.c.Client.ListObjects(ctx, b.o.Bucket, minio.ListObjectsOptions{Prefix: prefix, StartAfter: after, Recursive: true}) {
		if info.Err != nil {
			return s3Err(info.Err)
		}
		if info.Key <= after {
			continue
		}
		if !yield(info.Key) {
			return nil
		}
	}
	return nil
}

func (b *S3Bucket) CreateUpload(ctx context.Context, key string, o PutOptions) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if err := o.check(); err != nil {
		return "", err
	}
	id, err := b.c.NewMultipartUpload(ctx, b.o.Bucket, key, s3PutOptions(&o, "", ""))
	if err != nil {
		return "", s3Err(err)
	}
	return id, nil
}

func checkS3UploadID(id string) error {
	if id == "" || len(id) > 1024 || strings.ContainsFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || r == '/' }) {
		return ErrNoUpload
	}
	return nil
}

// UploadPart counts the part into a spool file first: S3 needs its size before its body.
func (b *S3Bucket) UploadPart(ctx context.Context, key, id string, n int, r io.Reader, o PutOptions) (Part, error) {
	if err := CheckKey(key); err != nil {
		return Part{}, err
	}
	if err := checkPartNumber(n); err != nil {
		return Part{}, err
	}
	if err := checkS3UploadID(id); err != nil {
		return Part{}, err
	}
	if err := o.check(); err != nil {
		return Part{}, err
	}
	f, err := os.CreateTemp(b.o.SpoolDir, "verge-s3-part-*")
	if err != nil {
		return Part{}, fmt.Errorf("objstore: %w", err)
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	h := newHashReader(ctxReader{ctx, r}, MaxPutSize, &o, false)
	buf := bufPool.Get().(*[]byte)
	size, err := io.CopyBuffer(writerOnly{f}, h, *buf)
	bufPool.Put(buf)
	if err != nil {
		return Part{}, err
	}
	md5b, _ := hex.DecodeString(h.md5Hex())
	p, err := b.c.PutObjectPart(ctx, b.o.Bucket, key, id, n, io.NewSectionReader(f, 0, size), size,
		minio.PutObjectPartOptions{Md5Base64: base64.StdEncoding.EncodeToString(md5b), DisableContentSha256: true})
	if err != nil {
		return Part{}, s3Err(err)
	}
	return Part{Number: n, ETag: trimQuotes(p.ETag), Size: size}, nil
}

func (b *S3Bucket) CompleteUpload(ctx context.Context, key, id string, parts []Part) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := checkS3UploadID(id); err != nil {
		return nil, err
	}
	stored := map[int]Part{}
	marker := 0
	for range MaxParts/1000 + 1 {
		res, err := b.c.ListObjectParts(ctx, b.o.Bucket, key, id, marker, 1000)
		if err != nil {
			return nil, s3Err(err)
		}
		for _, p := range res.ObjectParts {
			stored[p.PartNumber] = Part{Number: p.PartNumber, ETag: trimQuotes(p.ETag), Size: p.Size}
		}
		if !res.IsTruncated {
			break
		}
		marker = res.NextPartNumberMarker
	}
	if err := checkParts(parts, stored); err != nil {
		return nil, err
	}
	cp := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		cp[i] = minio.CompletePart{PartNumber: p.Number, ETag: stored[p.Number].ETag}
	}
	if _, err := b.c.CompleteMultipartUpload(ctx, b.o.Bucket, key, id, cp, minio.PutObjectOptions{}); err != nil {
		return nil, s3Err(err)
	}
	o, err := b.Head(ctx, key)
	if err == nil && o == nil {
		err = errors.New("objstore: s3: completed object not found")
	}
	return o, err
}

func (b *S3Bucket) AbortUpload(ctx context.Context, key, id string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := checkS3UploadID(id); err != nil {
		return err
	}
	if err := b.c.AbortMultipartUpload(ctx, b.o.Bucket, key, id); err != nil {
		return s3Err(err)
	}
	return nil
}
