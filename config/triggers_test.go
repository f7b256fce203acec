package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestTriggersAndServices(t *testing.T) {
	dir := t.TempDir()
	src := `listeners: [{address: "127.0.0.1:0"}]
workers:
  - name: gateway
    package: .
    services:
      - {binding: AUTH, service: auth}
      - {binding: SELF, service: gateway}
    triggers: {crons: ["*/5 * * * *", "0 3 * * MON", "@hourly"]}
  - name: auth
    package: .
`
	c, err := Parse(filepath.Join(dir, "v.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Workers[0]
	if len(w.Services) != 2 || w.Services[0].Binding != "AUTH" || w.Services[0].Service != "auth" {
		t.Fatalf("services: %+v", w.Services)
	}
	if len(w.Triggers.Crons) != 3 || w.Triggers.Crons[1] != "0 3 * * MON" {
		t.Fatalf("crons: %+v", w.Triggers.Crons)
	}
}

func TestTriggersAndServicesErrors(t *testing.T) {
	dir := t.TempDir()
	base := "listeners: [{address: \"127.0.0.1:0\"}]\nroutes: [{upstream: app}]\nupstreams: [{name: app, servers: [{address: \"127.0.0.1:9\"}]}]\n"
	many := strings.Repeat(`"* * * * *", `, 33)
	cases := []struct{ yaml, want string }{
		{"workers: [{name: w, package: ., triggers: {crons: [\"61 * * * *\"]}}]", `t.yaml:4:52: workers[0].triggers.crons[0]: cron "61 * * * *": minute field "61": 61 out of range 0-59`},
		{"workers: [{name: w, package: ., triggers: {crons: [\"* * * *\"]}}]", "4 fields"},
		{"workers: [{name: w, package: ., triggers: {crons: [\"* * * jan-foo *\"]}}]", `month field "jan-foo"`},
		{"workers: [{name: w, package: ., triggers: {crons: [\"@reboot\"]}}]", "unknown macro"},
		{"workers: [{name: w, package: ., triggers: {crons: [\"@daily\", \"@daily\"]}}]", `workers[0].triggers.crons[1]: duplicate cron "@daily"`},
		{"workers: [{name: w, package: ., triggers: {crons: [" + many + "]}}]", "33 cron triggers exceed 32"},
		{"workers: [{name: w, package: ., triggers: {cron: [x]}}]", "cron"},
		{"workers: [{name: w, package: ., services: [{binding: A, service: nope}]}]", `t.yaml:4:66: workers[0].services[0].service: unknown worker "nope"`},
		{"workers: [{name: w, package: ., services: [{binding: A}]}]", "workers[0].services[0].service: service is required"},
		{"workers: [{name: w, package: ., services: [{binding: 1A, service: w}]}]", `workers[0].services[0].binding: binding "1A"`},
		{"workers: [{name: w, package: ., kv: [{binding: A}], services: [{binding: A, service: w}]}]", `duplicate binding "A"`},
	}
	for _, c := range cases {
		_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\ngot %v\nwant %q", c.yaml, err, c.want)
		}
	}
}

// TestParseWorkerServices: a worker file stands alone, so its services are not checked
// against other workers; its crons are.
func TestParseWorkerServices(t *testing.T) {
	name := filepath.Join(t.TempDir(), WorkerFile)
	w, err := ParseWorker(name, []byte("name: gw\nservices: [{binding: AUTH, service: auth}]\ntriggers: {crons: [\"@hourly\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Services[0].Service != "auth" || w.Triggers.Crons[0] != "@hourly" {
		t.Fatalf("got %+v", w)
	}
	if _, err := ParseWorker(name, []byte("name: gw\ntriggers: {crons: [\"0 25 * * *\"]}\n")); err == nil || !strings.Contains(err.Error(), "worker.yaml:2:20: workers[0].triggers.crons[0]") {
		t.Fatalf("got %v, want a positioned cron error", err)
	}
}
