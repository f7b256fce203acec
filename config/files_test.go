package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFilesAndCompressValidation(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "site"), 0o755)
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	head := "listeners: [{address: 127.0.0.1:8080}]\nroutes:\n"
	tests := []struct {
		route string
		want  string // "" for valid
	}{
		{"  - files: {root: site}\n", ""},
		{"  - files: {root: site, index: [], browse: true, spa_fallback: /index.html, precompressed: [br, zstd, gzip], hidden: true}\n    compress: {}\n", ""},
		{"  - files: {root: site}\n    compress: {algorithms: [gzip], level: 9, min_size: 1KB, types: [text/*, application/*+json]}\n", ""},
		{"  - files: {}\n", "v.yaml:3:12: routes[0].files.root: root is required"},
		{"  - files: {root: missing}\n", "routes[0].files.root: stat " + filepath.Join(dir, "missing")},
		{"  - files: {root: file}\n", "routes[0].files.root: " + filepath.Join(dir, "file") + " is not a directory"},
		{"  - files: {root: site, index: [../x]}\n", `routes[0].files.index[0]: index "../x" must be a plain file name`},
		{"  - files: {root: site, spa_fallback: index.html}\n", `routes[0].files.spa_fallback: spa_fallback "index.html" must be a file path starting with /`},
		{"  - files: {root: site, spa_fallback: /a/../../x}\n", "routes[0].files.spa_fallback"},
		{"  - files: {root: site, precompressed: [deflate]}\n", `routes[0].files.precompressed[0]: unknown algorithm "deflate" (want zstd, br or gzip)`},
		{"  - files: {root: site, precompressed: [br, br]}\n", `routes[0].files.precompressed[1]: algorithm "br" listed twice`},
		{"  - files: {root: site}\n    respond: {body: x}\n", "routes[0]: upstream, worker, files, ai_gateway, redirect and respond are exclusive"},
		{"  - files: {root: site}\n    compress: {level: 12}\n", "routes[0].compress: level 12 out of range 1..9"},
		{"  - files: {root: site}\n    compress: {algorithms: [lzma]}\n", `routes[0].compress: unknown algorithm "lzma"`},
		{"  - files: {root: site}\n    compress: {types: [html]}\n", `routes[0].compress: invalid media type "html"`},
		{"  - respond: {body: x}\n    compress: {}\n", "routes[0].compress: compress applies to upstream, worker and files routes"},
	}
	for _, tc := range tests {
		f := filepath.Join(dir, "v.yaml")
		os.WriteFile(f, []byte(head+tc.route), 0o644)
		_, err := Load(f)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.route, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want %q", tc.route, err, tc.want)
		}
	}
}

func TestFilesRootFollowsTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "public"), 0o755)
	f := filepath.Join(dir, "v.yaml")
	os.WriteFile(f, []byte("listeners: [{address: 127.0.0.1:8080}]\nroutes:\n  - files: {root: public}\n"), 0o644)
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Routes[0].Files.Root; got != filepath.Join(dir, "public") {
		t.Errorf("root = %q", got)
	}
}
