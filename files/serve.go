package files

import (
	"crypto/rand"
	"encoding/hex"
	"html"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/compression"
)

// file sends a regular file (or its precompressed variant), honouring the conditional
// fields and Range.
func (w *writer) file(f *os.File, info fs.FileInfo, rel string) (Result, error) {
	r := w.resp
	ct := contentType(rel)
	coding := ""
	if pc := w.h.cfg.Precompressed; len(pc) > 0 {
		compression.AddVary(&r.Header)
		if vf, vi, a := w.h.variant(rel, compression.AcceptEncoding(&w.req.Header)); vf != nil {
			defer vf.Close()
			f, info, coding = vf, vi, a.Token()
		}
	}
	size, mod := info.Size(), info.ModTime()
	etag := makeETag(mod, size, coding)
	r.Header.Add("Content-Type", ct)
	if coding != "" {
		r.Header.Add("Content-Encoding", coding)
	}
	r.Header.Add("ETag", etag)
	r.Header.Add("Last-Modified", mod.UTC().Format(timeFormat))
	r.Header.Add("Accept-Ranges", "bytes")

	switch evaluate(w.req, etag, mod) {
	case failed:
		r.Header.Reset()
		return w.fail(412)
	case notModified:
		if p := w.h.cfg.Compress; p != nil {
			// The 304 carries the Vary and ETag of the 200 it stands for: decided on that
			// 200's head, and sent past the compressor, which cannot know it.
			r.Status, r.ContentLength = 200, size
			p.Validators(w.req, r)
			w.identity = true
		}
		r.Header.Del("Content-Type")
		r.Header.Del("Content-Encoding")
		r.Header.Del("Accept-Ranges")
		r.Status, r.ContentLength = 304, -1
		return w.send(nil)
	case proceedRange:
		rv, _ := w.req.Header.Lookup("Range")
		ranges, unsatisfiable, ignore := parseRange(rv, size)
		switch {
		case unsatisfiable:
			r.Header.Reset()
			r.Header.Add("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			return w.plain(416, "416 Range Not Satisfiable\n", "", "")
		case !ignore && len(ranges) == 1:
			return w.single(f, size, ranges[0])
		case !ignore && coding == "":
			// (Several ranges of a precompressed variant get the whole variant: the parts
			// of a multipart body cannot say their coding.)
			return w.multipart(f, size, ct, ranges)
		}
	}
	r.Status, r.ContentLength = 200, size
	return w.body(f, 0, size)
}

// variant opens the precompressed file the client ranks highest (ties: configured order).
func (h *Handler) variant(rel, ae string) (*os.File, fs.FileInfo, compression.Algorithm) {
	if ae == "" || rel == "." {
		return nil, nil, compression.None
	}
	var (
		best  *os.File
		bestI fs.FileInfo
		bestA compression.Algorithm
		bestQ int
	)
	for _, a := range h.cfg.Precompressed {
		q := compression.Quality(ae, a)
		if q <= bestQ {
			continue
		}
		f, err := h.open(rel + a.Ext())
		if err != nil {
			continue
		}
		info, err := f.Stat()
		if err != nil || !info.Mode().IsRegular() {
			f.Close()
			continue
		}
		if best != nil {
			best.Close()
		}
		best, bestI, bestA, bestQ = f, info, a, q
	}
	return best, bestI, bestA
}

// body sends the head and n bytes of f from off.
func (w *writer) body(f *os.File, off, n int64) (Result, error) {
	defer w.release()
	if err := w.writeHead(); err != nil {
		return w.result(), err
	}
	w.unwrapIdentity()
	if w.req.Method != "HEAD" && n > 0 {
		if err := w.copyFile(f, off, n); err != nil {
			w.ex.Abort(err)
			return w.result(), err
		}
	}
	err := w.ex.Finish(nil)
	return w.result(), err
}

// unwrapIdentity goes back to the exchange itself when the compressor decided not to
// compress, so that the body can take the sendfile path.
func (w *writer) unwrapIdentity() {
	if w.ex == &w.cx && w.cx.Compressed() == compression.None {
		w.ex = w.cx.ServerExchange
		w.cx.Release()
	}
}

func (w *writer) single(f *os.File, size int64, br byteRange) (Result, error) {
	r := w.resp
	r.Status, r.ContentLength = 206, br.length
	r.Header.Add("Content-Range", contentRange(br, size))
	return w.body(f, br.start, br.length)
}

func contentRange(br byteRange, size int64) string {
	return "bytes " + strconv.FormatInt(br.start, 10) + "-" + strconv.FormatInt(br.start+br.length-1, 10) +
		"/" + strconv.FormatInt(size, 10)
}

// multipart sends several ranges as multipart/byteranges (RFC 9110 section 14.6).
func (w *writer) multipart(f *os.File, size int64, ct string, ranges []byteRange) (Result, error) {
	var rb [12]byte
	rand.Read(rb[:])
	boundary := hex.EncodeToString(rb[:])
	heads := make([]string, len(ranges))
	total := int64(0)
	for i, br := range ranges {
		heads[i] = "\r\n--" + boundary + "\r\nContent-Type: " + ct + "\r\nContent-Range: " + contentRange(br, size) + "\r\n\r\n"
		total += int64(len(heads[i])) + br.length
	}
	tail := "\r\n--" + boundary + "--\r\n"
	total += int64(len(tail))
	r := w.resp
	r.Status, r.ContentLength = 206, total
	r.Header.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	defer w.release()
	if err := w.writeHead(); err != nil {
		return w.result(), err
	}
	w.unwrapIdentity()
	if w.req.Method != "HEAD" {
		for i, br := range ranges {
			if err := w.write([]byte(heads[i])); err != nil {
				return w.result(), err
			}
			if err := w.copyFile(f, br.start, br.length); err != nil {
				w.ex.Abort(err)
				return w.result(), err
			}
		}
		if err := w.write([]byte(tail)); err != nil {
			return w.result(), err
		}
	}
	err := w.ex.Finish(nil)
	return w.result(), err
}

// maxListing bounds the entries a directory listing shows.
const maxListing = 10000

// listing sends an HTML index of a directory: names sorted, HTML-escaped, links
// percent-encoded; dotfiles left out unless Hidden.
func (w *writer) listing(dir *os.File, rel string) (Result, error) {
	entries, _ := dir.ReadDir(maxListing + 1)
	truncated := len(entries) > maxListing
	if truncated {
		entries = entries[:maxListing]
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	title := "/"
	if rel != "." {
		title = "/" + rel + "/"
	}
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</title></head>\n<body><h1>Index of ")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n")
	if rel != "." {
		b.WriteString("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n")
	}
	for _, e := range entries {
		name := e.Name()
		if name[0] == '.' && !w.h.cfg.Hidden {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		display, href, size := name, url.PathEscape(name), strconv.FormatInt(info.Size(), 10)
		if e.IsDir() {
			display, href, size = name+"/", href+"/", "-"
		}
		b.WriteString("<tr><td><a href=\"./")
		b.WriteString(html.EscapeString(href))
		b.WriteString("\">")
		b.WriteString(html.EscapeString(display))
		b.WriteString("</a></td><td>")
		b.WriteString(size)
		b.WriteString("</td><td>")
		b.WriteString(info.ModTime().UTC().Format(time.DateTime))
		b.WriteString("</td></tr>\n")
	}
	b.WriteString("</table>\n")
	if truncated {
		b.WriteString("<p>Only the first " + strconv.Itoa(maxListing) + " entries are shown.</p>\n")
	}
	b.WriteString("</body></html>\n")
	r := w.resp
	r.Status = 200
	r.Header.Add("Content-Type", "text/html; charset=utf-8")
	r.Header.Add("Cache-Control", "no-cache")
	r.ContentLength = int64(b.Len())
	return w.send([]byte(b.String()))
}
