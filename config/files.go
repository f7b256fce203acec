package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/verge-edge/verge/compression"
)

// Files is the static file action of a route (docs/files.md): it answers GET and HEAD from
// a directory, with ranges, conditional requests and ETags; other methods get 405.
type Files struct {
	// Root is the directory served; a relative path is relative to the config file.
	// Required. Request paths map onto it whole, as NGINX's root does: /a/b.css is
	// <root>/a/b.css. Nothing outside it is reachable, symlinks included.
	Root string `yaml:"root"`
	// Index lists the files tried for a directory, in order. Nil means [index.html]; an
	// empty list means none.
	Index *StringList `yaml:"index"`
	// Browse lists directories without an index file. Default false: they are answered 403.
	Browse bool `yaml:"browse"`
	// SPAFallback is a file path (e.g. /index.html) served with 200 for GET and HEAD
	// requests naming nothing whose last path segment has no "." (application routes, not
	// missing assets). Empty means none.
	SPAFallback string `yaml:"spa_fallback"`
	// Precompressed lists codings (zstd, br, gzip) whose precompressed variants (file.zst,
	// file.br, file.gz next to the file) are served to clients that accept them, in order
	// of preference. Empty means none.
	Precompressed StringList `yaml:"precompressed"`
	// Hidden serves names starting with "." as well. Default false: 404 (.well-known is
	// always served).
	Hidden bool `yaml:"hidden"`
}

// Compress compresses a route's responses (an upstream's, a worker's or static files) as
// they stream, after HTML rewriting (docs/files.md, "Compression").
type Compress struct {
	// Algorithms are the codings offered, in order of preference when the client weighs
	// several equally: zstd, br, gzip. Empty means [zstd, br, gzip].
	Algorithms StringList `yaml:"algorithms"`
	// Level is 1 (fastest) to 9 (smallest) for every coding. Zero means 5.
	Level int `yaml:"level"`
	// MinSize is the smallest Content-Length compressed; bodies of unknown length are
	// compressed. Zero means 512B (Caddy's default).
	MinSize Size `yaml:"min_size"`
	// Types lists the media types compressed: type/subtype, type/* or type/*+suffix. Empty
	// means compression.DefaultTypes (text/*, JSON, JavaScript, XML, SVG, WebAssembly, fonts
	// that are not compressed already).
	Types StringList `yaml:"types"`
}

// Policy builds the compression policy; c was validated.
func (c *Compress) Policy() (*compression.Policy, error) {
	return compression.NewPolicy(c.Algorithms, c.Level, int64(c.MinSize), c.Types)
}

// PrecompressedAlgorithms returns the codings of Precompressed; f was validated.
func (f *Files) PrecompressedAlgorithms() []compression.Algorithm {
	var out []compression.Algorithm
	for _, s := range f.Precompressed {
		if a, ok := compression.ParseAlgorithm(s); ok {
			out = append(out, a)
		}
	}
	return out
}

// routeFiles validates a route's files and compress settings and returns how many actions
// files adds (0 or 1).
func (v *validator) routeFiles(p string, r *Route) int {
	if c := r.Compress; c != nil {
		if _, err := c.Policy(); err != nil {
			v.errf(p+".compress", "%v", err)
		}
		if r.Redirect != nil || r.Respond != nil {
			v.errf(p+".compress", "compress applies to upstream, worker and files routes, not to redirect or respond")
		}
	}
	f := r.Files
	if f == nil {
		return 0
	}
	p += ".files"
	if f.Root == "" {
		v.errf(p+".root", "root is required")
	} else if st, err := os.Stat(f.Root); err != nil {
		v.errf(p+".root", "%v", err)
	} else if !st.IsDir() {
		v.errf(p+".root", "%s is not a directory", f.Root)
	}
	if f.Index != nil {
		for i, name := range *f.Index {
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
				v.errf(fmt.Sprintf("%s.index[%d]", p, i), "index %q must be a plain file name", name)
			}
		}
	}
	if s := f.SPAFallback; s != "" && (s[0] != '/' || s == "/" || strings.ContainsAny(s, "\\\x00") || hasDotDot(s)) {
		v.errf(p+".spa_fallback", "spa_fallback %q must be a file path starting with / without .. segments", s)
	}
	seen := map[compression.Algorithm]bool{}
	for i, s := range f.Precompressed {
		a, ok := compression.ParseAlgorithm(s)
		switch {
		case !ok:
			v.errf(fmt.Sprintf("%s.precompressed[%d]", p, i), "unknown algorithm %q (want zstd, br or gzip)", s)
		case seen[a]:
			v.errf(fmt.Sprintf("%s.precompressed[%d]", p, i), "algorithm %q listed twice", s)
		}
		seen[a] = true
	}
	return 1
}

func hasDotDot(s string) bool {
	return slices.Contains(strings.Split(s, "/"), "..")
}
