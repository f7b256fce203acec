package objstore

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// hashReader reads a body through its digests, bounds its size, and at its end checks the
// checksums a put was given: a mismatch or an excess is the read's error, so that whatever
// consumes the reader (a file, a JetStream put) stores nothing.
type hashReader struct {
	r      io.Reader
	md5    hash.Hash
	sha    hash.Hash
	n, max int64
	want   *PutOptions
	done   bool
}

func newHashReader(r io.Reader, max int64, o *PutOptions, sha bool) *hashReader {
	h := &hashReader{r: r, md5: md5.New(), max: max, want: o}
	if sha || o.SHA256 != nil {
		h.sha = sha256.New()
	}
	return h
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.n += int64(n)
		if h.n > h.max {
			return 0, fmt.Errorf("%w: body exceeds %d bytes", ErrTooLarge, h.max)
		}
		h.md5.Write(p[:n])
		if h.sha != nil {
			h.sha.Write(p[:n])
		}
	}
	if err == io.EOF {
		if err := h.verify(); err != nil {
			return n, err
		}
		h.done = true
	}
	return n, err
}

func (h *hashReader) verify() error {
	if w := h.want.MD5; w != nil && !bytes.Equal(w, h.md5.Sum(nil)) {
		return fmt.Errorf("%w: md5 of the body is %x, not %x", ErrChecksum, h.md5.Sum(nil), w)
	}
	if w := h.want.SHA256; w != nil && !bytes.Equal(w, h.sha.Sum(nil)) {
		return fmt.Errorf("%w: sha256 of the body is %x, not %x", ErrChecksum, h.sha.Sum(nil), w)
	}
	return nil
}

func (h *hashReader) md5Hex() string { return hex.EncodeToString(h.md5.Sum(nil)) }

func (h *hashReader) shaHex() string {
	if h.sha == nil {
		return ""
	}
	return hex.EncodeToString(h.sha.Sum(nil))
}

// multipartETag returns the ETag of an object assembled from parts: the MD5 of the parts'
// MD5s, then "-" and the count, as S3 and R2 make it.
func multipartETag(parts []Part) (string, error) {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(p.ETag)
		if err != nil || len(b) != md5.Size {
			return "", fmt.Errorf("%w: part %d: bad etag %q", ErrInvalid, p.Number, p.ETag)
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(parts)), nil
}

// checkParts validates a CompleteUpload's list against the stored parts.
func checkParts(parts []Part, stored map[int]Part) error {
	if len(parts) == 0 || len(parts) > MaxParts {
		return fmt.Errorf("%w: %d parts (want 1..%d)", ErrInvalid, len(parts), MaxParts)
	}
	var total int64
	for i, p := range parts {
		s, ok := stored[p.Number]
		if !ok {
			return fmt.Errorf("%w: part %d was not uploaded", ErrInvalid, p.Number)
		}
		if i > 0 && p.Number <= parts[i-1].Number {
			return fmt.Errorf("%w: parts must be listed in ascending order", ErrInvalid)
		}
		if p.ETag != "" && trimQuotes(p.ETag) != s.ETag {
			return fmt.Errorf("%w: part %d: etag %s does not match the uploaded part's %q", ErrInvalid, p.Number, p.ETag, s.ETag)
		}
		if i < len(parts)-1 && s.Size < MinPartSize {
			return fmt.Errorf("%w: part %d has %d bytes; every part but the last needs at least %d", ErrInvalid, p.Number, s.Size, MinPartSize)
		}
		total += s.Size
	}
	if total > MaxObjectSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, total)
	}
	return nil
}

func trimQuotes(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func checkPartNumber(n int) error {
	if n < 1 || n > MaxParts {
		return fmt.Errorf("%w: part number %d out of range 1..%d", ErrInvalid, n, MaxParts)
	}
	return nil
}
