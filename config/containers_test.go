package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestContainersSection(t *testing.T) {
	dir := t.TempDir()
	src := `
listeners: [{address: "127.0.0.1:0"}]
routes: [{worker: w}]
container_runtime: {driver: process, max_instances: 4, ulimits: [nofile=512:512]}
workers:
  - name: w
    package: .
    durable_objects: [{binding: APP, class: App}]
    containers:
      - {class: App, image: bin/server, sleep_after: 30s, env: {A: b}, resources: {cpu: 0.5, memory: 64MiB}}
`
	c, err := Parse(filepath.Join(dir, "v.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Workers[0].Containers[0]
	if k.Image != filepath.Join(dir, "bin/server") || k.Port != 8080 || k.MaxInstances != 10 || k.SleepAfter.Std() != 30*time.Second ||
		k.Resources.Memory != 64<<20 || k.Resources.CPU != 0.5 || k.Env["A"] != "b" {
		t.Fatalf("got %+v", k)
	}
	if r := c.ContainerRuntime; r.Driver != "process" || r.MaxInstances != 4 || r.Ulimits[0] != "nofile=512:512" {
		t.Fatalf("runtime: got %+v", r)
	}
}

func TestContainersErrors(t *testing.T) {
	dir := t.TempDir()
	base := "listeners: [{address: \"127.0.0.1:0\"}]\nroutes: [{worker: w}]\n"
	w := "workers:\n  - name: w\n    package: .\n    durable_objects: [{binding: APP, class: App}]\n    containers:\n"
	cases := []struct{ yaml, want string }{
		{w + "      - {class: Nope, image: x}", `t.yaml:8:17: workers[0].containers[0].class: class "Nope" has no durable_objects binding in this worker`},
		{w + "      - {image: x}", `workers[0].containers[0].class: class is required`},
		{w + "      - {class: App}", `t.yaml:8:9: workers[0].containers[0].image: image is required`},
		{w + "      - {class: App, image: x}\n      - {class: App, image: y}", `workers[0].containers[1].class: duplicate container class "App"`},
		{w + "      - {class: App, image: x, port: 70000}", `workers[0].containers[0].port: port 70000: want 1 to 65535`},
		{w + "      - {class: App, image: x, max_instances: -1}", `max_instances -1: want 1 to 1000`},
		{w + "      - {class: App, image: x, resources: {memory: 1MiB}}", `workers[0].containers[0].resources.memory: memory 1048576 is below 6MiB`},
		{w + "      - {class: App, image: x, resources: {cpu: -1}}", `resources.cpu: cpu -1`},
		{w + "      - {class: App, image: --privileged}", `not an image reference`},
		{w + "      - {class: App, image: x, sleep_after: -1s}", `sleep_after`},
		{w + "      - {class: App, image: x, bogus: 1}", `bogus`},
		{"container_runtime: {driver: docker}", `t.yaml:3:29: container_runtime.driver: unknown driver "docker"`},
		{"container_runtime: {ulimits: [nofile]}", `container_runtime.ulimits[0]: ulimit "nofile"`},
		{"container_runtime: {cgroup_manager: x}", `unknown cgroup manager`},
	}
	for _, c := range cases {
		y := base + c.yaml
		if !strings.Contains(c.yaml, "workers:") {
			y += "\nworkers: [{name: w, package: .}]"
		}
		_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(y))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\ngot %v\nwant %q", c.yaml, err, c.want)
		}
	}
}

// TestAbsContainerImages: relative images (the process driver's executables) become
// absolute under the directory; absolute ones stay.
func TestAbsContainerImages(t *testing.T) {
	w := &Worker{Containers: []WorkerContainer{{Image: "bin/server"}, {Image: "/opt/server"}, {}}}
	w.AbsContainerImages("/work/w")
	if got := []string{w.Containers[0].Image, w.Containers[1].Image, w.Containers[2].Image}; got[0] != "/work/w/bin/server" || got[1] != "/opt/server" || got[2] != "" {
		t.Fatalf("got %q", got)
	}
}
