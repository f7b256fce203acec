// Package objstore stores workers' object buckets, in the manner of Cloudflare R2: objects of
// any size up to MaxObjectSize, each with HTTP metadata, custom metadata and an ETag, read
// whole, by range or under RFC 9110 preconditions, listed in key order with prefixes,
// delimiters and cursors, and written in one streamed put or in a multipart upload.
//
// A Store holds buckets by name. Two stores are provided: Local (files under a directory,
// the single-node default) and JetStream (NATS JetStream object stores, when Verge runs in
// a cluster). Bodies stream both ways: no store holds an object in memory.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode/utf8"
)

// Limits.
const (
	// MaxKeyLen bounds a key, in bytes of UTF-8.
	MaxKeyLen = 1024
	// MaxCustomMetadata bounds the custom metadata of an object: the names and values
	// together, in bytes.
	MaxCustomMetadata = 2048
	// MaxHTTPMetadata bounds each HTTP metadata value, in bytes.
	MaxHTTPMetadata = 1024
	// MaxPutSize bounds an object written by one Put (larger ones use a multipart upload).
	MaxPutSize = 5 << 30
	// MaxObjectSize bounds an object (a completed multipart upload).
	MaxObjectSize = 5 << 40
	// MinPartSize is the least size of every part of a multipart upload but the last.
	MinPartSize = 5 << 20
	// MaxParts bounds the parts of a multipart upload; part numbers run from 1 to it.
	MaxParts = 10000
	// MaxListLimit bounds the entries of one List page, and is its default.
	MaxListLimit = 1000
	// MaxDeleteKeys bounds the keys of one Delete.
	MaxDeleteKeys = 1000
	// UploadExpiry is how long an unfinished multipart upload is kept.
	UploadExpiry = 7 * 24 * time.Hour
)

// Errors. Wrapped errors are matched with errors.Is.
var (
	// ErrInvalid is a request the store refuses: a bad key, options or upload.
	ErrInvalid = errors.New("objstore: invalid request")
	// ErrChecksum is a put whose body does not match the checksum given: nothing is stored.
	ErrChecksum = errors.New("objstore: checksum mismatch")
	// ErrTooLarge is a body beyond MaxPutSize or MaxObjectSize.
	ErrTooLarge = errors.New("objstore: object too large")
	// ErrNoUpload is a multipart upload that does not exist (completed, aborted, expired).
	ErrNoUpload = errors.New("objstore: no such multipart upload")
)

// bucketName is the form of a bucket's name in every store.
var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// ValidBucketName reports whether name can name a bucket: 1 to 63 letters, digits, '_' and
// '-'.
func ValidBucketName(name string) bool { return bucketName.MatchString(name) }

// CheckKey returns an error wrapping ErrInvalid unless key is a valid object key: 1 to
// MaxKeyLen bytes of valid UTF-8. A key is an opaque string: "/" and ".." have no meaning.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrInvalid, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalid)
	}
	return nil
}

// Store holds named buckets.
type Store interface {
	// Bucket opens (creating when needed) the bucket name.
	Bucket(ctx context.Context, name string) (Bucket, error)
	// Close releases the store.
	Close() error
}

// Bucket is one bucket of objects. Every method is safe for concurrent use.
type Bucket interface {
	// Head returns an object's metadata, nil when it does not exist.
	Head(ctx context.Context, key string) (*Object, error)
	// Open returns an object's metadata and a reader of length bytes of its body from
	// offset (length -1: to the end), or nil metadata when it does not exist. The caller
	// closes the reader.
	Open(ctx context.Context, key string, offset, length int64) (*Object, io.ReadCloser, error)
	// Put stores r as key's body, replacing any object. r is read to its end; the object
	// is visible, whole, only once Put returns without error.
	Put(ctx context.Context, key string, r io.Reader, o PutOptions) (*Object, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys []string) error
	// Keys calls yield with the keys after startAfter (all when empty) that start with
	// prefix, in byte order, until yield returns false.
	Keys(ctx context.Context, prefix, startAfter string, yield func(key string) bool) error
	// CreateUpload starts a multipart upload of key and returns its id.
	CreateUpload(ctx context.Context, key string, o PutOptions) (string, error)
	// UploadPart stores part number n (1..MaxParts) of an upload, replacing an earlier
	// upload of the same number.
	UploadPart(ctx context.Context, key, upload string, n int, r io.Reader, o PutOptions) (Part, error)
	// CompleteUpload assembles the parts listed, in order, as key's object and ends the
	// upload.
	CompleteUpload(ctx context.Context, key, upload string, parts []Part) (*Object, error)
	// AbortUpload ends an upload and drops its parts.
	AbortUpload(ctx context.Context, key, upload string) error
}

// HTTPMetadata are the header fields stored with an object and sent with it.
type HTTPMetadata struct {
	ContentType        string `json:"content_type,omitempty"`
	ContentLanguage    string `json:"content_language,omitempty"`
	ContentDisposition string `json:"content_disposition,omitempty"`
	ContentEncoding    string `json:"content_encoding,omitempty"`
	CacheControl       string `json:"cache_control,omitempty"`
	Expires            string `json:"expires,omitempty"`
}

func (h *HTTPMetadata) check() error {
	for _, v := range []string{h.ContentType, h.ContentLanguage, h.ContentDisposition, h.ContentEncoding, h.CacheControl, h.Expires} {
		if len(v) > MaxHTTPMetadata {
			return fmt.Errorf("%w: http metadata value of %d bytes exceeds %d", ErrInvalid, len(v), MaxHTTPMetadata)
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return fmt.Errorf("%w: http metadata value has a control character", ErrInvalid)
			}
		}
	}
	return nil
}

// Object is an object's metadata.
type Object struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// ETag is the entity tag without quotes: the hex MD5 of the body for a put, the MD5 of
	// the parts' MD5s and "-<parts>" for a multipart upload.
	ETag     string            `json:"etag"`
	Uploaded time.Time         `json:"uploaded"`
	HTTP     HTTPMetadata      `json:"http,omitzero"`
	Custom   map[string]string `json:"custom,omitempty"`
	// MD5 and SHA256 are the body's digests in hex, when known (a put computes both; a
	// multipart upload neither).
	MD5    string `json:"md5,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// HTTPETag returns the ETag as a header field value (quoted).
func (o *Object) HTTPETag() string { return `"` + o.ETag + `"` }

// PutOptions are a put's optional parts.
type PutOptions struct {
	HTTP   HTTPMetadata
	Custom map[string]string
	// MD5 and SHA256, when set (raw digests), must match the body or nothing is stored.
	MD5    []byte
	SHA256 []byte
}

func (o *PutOptions) check() error {
	n := 0
	for k, v := range o.Custom {
		n += len(k) + len(v)
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: custom metadata names must be non-empty UTF-8", ErrInvalid)
		}
	}
	if n > MaxCustomMetadata {
		return fmt.Errorf("%w: custom metadata of %d bytes exceeds %d", ErrInvalid, n, MaxCustomMetadata)
	}
	if o.MD5 != nil && len(o.MD5) != 16 {
		return fmt.Errorf("%w: md5 checksum of %d bytes (want 16)", ErrInvalid, len(o.MD5))
	}
	if o.SHA256 != nil && len(o.SHA256) != 32 {
		return fmt.Errorf("%w: sha256 checksum of %d bytes (want 32)", ErrInvalid, len(o.SHA256))
	}
	return o.HTTP.check()
}

// Part is an uploaded part of a multipart upload.
type Part struct {
	Number int    `json:"number"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
}
