package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestClusterObjectsE2E runs the files example on a three-node cluster: the bucket is a
// JetStream object store, so what one node stores every node reads, by range and under
// preconditions, lists and deletes.
func TestClusterObjectsE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("three verge processes")
	}
	cs := startClusterProcsWith(t, 3, testwasm.BuildFile(t, "examples/workers/files"), `
    buckets: [{binding: FILES, bucket: files}]`)
	n1, n2, n3 := cs.procs[0], cs.procs[1], cs.procs[2]
	body := strings.Repeat("cluster object ", 10000) // 150,000 bytes: streamed, not inline
	waitFor(t, "node 1 to store an object", 90*time.Second, func() bool {
		code, _, _ := n1.do("PUT", "/files/shared/doc.txt", body)
		return code == 201
	})
	for _, p := range cs.procs[1:] {
		waitFor(t, "every node to serve", 90*time.Second, func() bool {
			code, _, _ := p.do("GET", "/list", "")
			return code == 200
		})
	}
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(p *clusterProc, path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	resp, out := get(n2, "/files/shared/doc.txt", nil)
	if resp.StatusCode != 200 || out != body || resp.ContentLength != int64(len(body)) {
		t.Fatalf("node 2 get: %d, %d bytes", resp.StatusCode, len(out))
	}
	etag := resp.Header.Get("ETag")
	resp, out = get(n3, "/files/shared/doc.txt", map[string]string{"Range": "bytes=149990-"})
	if resp.StatusCode != 206 || out != "er object " || resp.Header.Get("Content-Range") != "bytes 149990-149999/150000" {
		t.Fatalf("node 3 range: %d %q %q", resp.StatusCode, out, resp.Header.Get("Content-Range"))
	}
	if resp, _ := get(n3, "/files/shared/doc.txt", map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 {
		t.Fatalf("node 3 if-none-match: %d", resp.StatusCode)
	}
	if resp, _ := get(n1, "/files/shared/doc.txt", map[string]string{"If-Match": `"stale"`}); resp.StatusCode != 412 {
		t.Fatalf("node 1 if-match: %d", resp.StatusCode)
	}
	if code, out, _ := n3.do("PUT", "/files/shared/from-3.txt", "three"); code != 201 {
		t.Fatalf("node 3 put: %d %s", code, out)
	}
	if _, out := get(n2, "/list?prefix=shared/", nil); !strings.Contains(out, `"shared/doc.txt"`) || !strings.Contains(out, `"shared/from-3.txt"`) {
		t.Fatalf("node 2 list: %s", out)
	}
	if code, _, _ := n2.do("DELETE", "/files/shared/doc.txt", ""); code != 204 {
		t.Fatalf("node 2 delete: %d", code)
	}
	if resp, _ := get(n1, "/files/shared/doc.txt", nil); resp.StatusCode != 404 {
		t.Fatalf("node 1 after the delete: %d", resp.StatusCode)
	}
}
