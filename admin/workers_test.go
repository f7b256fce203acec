package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// deployController is a fake Controller that runs workers.
type deployController struct {
	fakeController
	deployed map[string][]byte
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
	cases := []struct {
		name string
		body []byte
		want int
	}{
		{"nope", []byte("\x00asm"), 404},
		{"counter", []byte("garbage"), 422},
		{"counter", nil, 400},
	}
	for _, c := range cases {
		if code, body := put(c.name, c.body); code != c.want {
			t.Errorf("PUT %s %q: got %d %s, want %d", c.name, c.body, code, body, c.want)
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
