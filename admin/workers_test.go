package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// deployController is a fake Controller that runs workers.
type deployController struct {
	fakeController
	deployed map[string][]byte
	stored   map[string]bool // cluster deployments
	drops    int
	down     bool // the cluster is unreachable
}

func (d *deployController) DropDeployment(_ context.Context, name string) (*ClusterDeploy, error) {
	switch {
	case d.stored == nil:
		return nil, fmt.Errorf("not in a cluster: %w", errors.ErrUnsupported)
	case d.down:
		return nil, fmt.Errorf("storing: %w", ErrClusterUnavailable)
	case !d.stored[name]:
		return nil, fmt.Errorf("worker %q has no cluster deployment: %w", name, ErrNotFound)
	}
	delete(d.stored, name)
	d.drops++
	return &ClusterDeploy{Nodes: 3, Members: 3}, nil
}

func (d *deployController) Workers() []WorkerStatus {
	var out []WorkerStatus
	for n := range d.deployed {
		out = append(out, WorkerStatus{Name: n, Version: "v"})
	}
	return out
}

func (d *deployController) DeployWorker(_ context.Context, name string, module []byte) (WorkerStatus, error) {
	if _, ok := d.deployed[name]; !ok {
		return WorkerStatus{}, fmt.Errorf("worker %q: %w", name, ErrNotFound)
	}
	if !bytes.HasPrefix(module, []byte("\x00asm")) {
		return WorkerStatus{}, fmt.Errorf("not a WebAssembly module")
	}
	if d.down {
		return WorkerStatus{}, fmt.Errorf("storing: %w", ErrClusterUnavailable)
	}
	d.deployed[name] = module
	return WorkerStatus{Name: name, Version: "new"}, nil
}

func TestWorkerDeploy(t *testing.T) {
	dc := &deployController{deployed: map[string][]byte{"counter": nil}}
	base := startServer(t, &Server{Controller: dc})
	put := func(name string, body []byte) (int, string) {
		req, _ := http.NewRequest("PUT", base+"/workers/"+name, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/wasm")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := put("counter", []byte("\x00asm\x01")); code != 200 {
		t.Fatalf("deploy: %d %s", code, body)
	}
	if string(dc.deployed["counter"]) != "\x00asm\x01" {
		t.Fatal("module not handed to the controller")
	}
	// A module of megabytes (read into a buffer sized from Content-Length) arrives whole.
	big := append([]byte("\x00asm"), bytes.Repeat([]byte{7}, 3<<20)...)
	if code, body := put("counter", big); code != 200 || !bytes.Equal(dc.deployed["counter"], big) {
		t.Fatalf("deploy of %d bytes: %d %s, module intact: %v", len(big), code, body, bytes.Equal(dc.deployed["counter"], big))
	}
	cases := []struct {
		name string
		body []byte
		want int
	}{
		{"nope", []byte("\x00asm"), 404},
		{"counter", []byte("garbage"), 422},
		{"counter", nil, 400},
		{"counter", append([]byte("\x00asm"), make([]byte, MaxWorkerModuleBytes)...), 413},
	}
	for _, c := range cases {
		if code, body := put(c.name, c.body); code != c.want {
			t.Errorf("PUT %s (%d bytes): got %d %s, want %d", c.name, len(c.body), code, body, c.want)
		}
	}
	resp, err := http.Get(base + "/workers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []WorkerStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list) != 1 || list[0].Name != "counter" {
		t.Fatalf("GET /workers: %v %v", list, err)
	}
	plain := startServer(t, &Server{Controller: &fakeController{}})
	if resp, _ := http.Get(plain + "/workers"); resp.StatusCode != 501 {
		t.Fatalf("without workers: got %d, want 501", resp.StatusCode)
	}
}

// TestClusterDeploymentEndpoints checks DELETE /workers/{name}/deployment and the 503 of a
// deploy the cluster cannot store.
func TestClusterDeploymentEndpoints(t *testing.T) {
	dc := &deployController{deployed: map[string][]byte{"app": nil}, stored: map[string]bool{"app": true}}
	base := startServer(t, &Server{Controller: dc})
	send := func(method, path, ctype string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := send("DELETE", "/workers/app/deployment", "application/json", nil)
	var res ClusterDeploy
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || res.Stored || res.Nodes != 3 || dc.drops != 1 {
		t.Fatalf("drop: %d %s (drops %d)", code, body, dc.drops)
	}
	if code, body := send("DELETE", "/workers/app/deployment", "application/json", nil); code != 404 {
		t.Errorf("drop again: %d %s, want 404", code, body)
	}
	dc.down = true
	dc.stored["app"] = true
	if code, body := send("DELETE", "/workers/app/deployment", "application/json", nil); code != 503 {
		t.Errorf("drop, cluster down: %d %s, want 503", code, body)
	}
	if code, body := send("PUT", "/workers/app", "application/wasm", []byte("\x00asm\x01")); code != 503 {
		t.Errorf("deploy, cluster down: %d %s, want 503", code, body)
	}
	dc.stored = nil
	if code, body := send("DELETE", "/workers/app/deployment", "application/json", nil); code != 501 {
		t.Errorf("drop outside a cluster: %d %s, want 501", code, body)
	}
	// A controller without the capability.
	base2 := startServer(t, &Server{Controller: &fakeController{ready: true}})
	req, _ := http.NewRequest("DELETE", base2+"/workers/app/deployment", nil)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 501 {
		t.Errorf("controller without deployments: %d, want 501", resp.StatusCode)
	}
}

// TestWorkerDeployTooLargeRefusedUnread checks that a module whose Content-Length is over
// the limit gets 413 at once, before its body is sent: reading 64 MiB only to throw them
// away is slow, and a slow sender would run into the read timeout instead.
func TestWorkerDeployTooLargeRefusedUnread(t *testing.T) {
	dc := &deployController{deployed: map[string][]byte{"counter": nil}}
	base := startServer(t, &Server{Controller: dc})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server's read timeout is 30 s; an answer that waits for the body comes after it.
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "PUT /workers/counter HTTP/1.1\r\nHost: %s\r\nContent-Type: application/wasm\r\n"+
		"Content-Length: %d\r\n\r\n\x00asm", strings.TrimPrefix(base, "http://"), MaxWorkerModuleBytes+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", resp.StatusCode)
	}
}
