package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWorkersSection(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "w.wasm"), []byte("\x00asm"), 0o644)
	os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600)
	src := `
listeners: [{address: "127.0.0.1:0"}]
upstreams: [{name: app, servers: [{address: "127.0.0.1:9"}]}]
routes:
  - match: {path_prefix: /w}
    worker: counter
    worker_on_error: origin
    upstream: app
  - match: {path_prefix: /x}
    worker: counter
workers:
  - name: counter
    module: w.wasm
    env: {GREETING: hi}
    secrets: [{name: TOKEN, file: token}]
    kv: [{binding: KV}]
    durable_objects: [{binding: COUNTER, class: Counter}]
    buckets:
      - {binding: FILES, bucket: files}
      - {binding: LOGS}
      - {binding: ARCHIVE, s3: {endpoint: "https://s3.example", bucket: arch, access_key: {file: token}, secret_key: {file: token}, path_style: true}}
    limits: {cpu_time: 20ms, memory: 64MiB}
    fetch: {allow: ["10.0.0.0/8", "127.0.0.1", "[::1]:8080", "api.internal:8443"]}
worker_memory_limit: 2GiB
`
	c, err := Parse(filepath.Join(dir, "v.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Workers[0]
	if w.Module != filepath.Join(dir, "w.wasm") || w.KV[0].Namespace != "KV" || w.DurableObjects[0].Namespace != "counter-Counter" {
		t.Fatalf("defaults: got %+v", w)
	}
	if w.Limits.CPUTime.Std() != 20*time.Millisecond || w.Limits.Memory != 64<<20 || w.Secrets[0].File != filepath.Join(dir, "token") {
		t.Fatalf("limits/secrets: got %+v", w)
	}
	if len(w.Buckets) != 3 || w.Buckets[0].Bucket != "files" || w.Buckets[1].Bucket != "LOGS" || w.Buckets[2].S3.SecretKey.File != filepath.Join(dir, "token") || !w.Buckets[2].S3.PathStyle {
		t.Fatalf("buckets: got %+v", w.Buckets)
	}
	if len(w.Fetch.Allow) != 4 || w.Fetch.Allow[3] != "api.internal:8443" {
		t.Fatalf("fetch: got %+v", w.Fetch)
	}
	if c.WorkerMemoryLimit != 2<<30 {
		t.Fatalf("worker_memory_limit %d, want 2GiB", c.WorkerMemoryLimit)
	}
	if c.Routes[1].WorkerOnError != WorkerOnErrorFail || c.WorkerData != filepath.Join(dir, ".verge") {
		t.Fatalf("route default %q, data %q", c.Routes[1].WorkerOnError, c.WorkerData)
	}
}

func TestWorkersErrors(t *testing.T) {
	dir := t.TempDir()
	base := "listeners: [{address: \"127.0.0.1:0\"}]\nupstreams: [{name: app, servers: [{address: \"127.0.0.1:9\"}]}]\n"
	cases := []struct{ yaml, want string }{
		{"routes: [{worker: nope}]", `routes[0].worker: unknown worker "nope"`},
		{"routes: [{worker: w, worker_on_error: origin}]\nworkers: [{name: w, package: .}]", "origin needs the route's upstream"},
		{"routes: [{worker: w, upstream: app}]\nworkers: [{name: w, package: .}]", "exclusive"},
		{"routes: [{upstream: app}]\nworkers: [{name: w}]", "exactly one of module and package"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., kv: [{binding: A}, {binding: A}]}]", `duplicate binding "A"`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., secrets: [{name: S, from_env: VERGE_TEST_UNSET_VAR}]}]", "VERGE_TEST_UNSET_VAR is not set"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., durable_objects: [{binding: D}]}]", "class is required"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., fetch: {allow: [\"10.0.0.0/33\"]}}]", "workers[0].fetch.allow[0]"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., fetch: {allow: [\"host:0\"]}}]", "bad port"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., fetch: {allow: [justahost]}}]", "want a CIDR prefix"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., fetch: {deny: [x]}}]", "deny"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., limits: {objects_per_instance: 2000}}]", "t.yaml:4:64: workers[0].limits.objects_per_instance: objects_per_instance 2000 exceeds 1024"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., limits: {objects_per_instance: -1}}]", "limits must not be negative"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., buckets: [{binding: F, bucket: ../etc}]}]", `t.yaml:4:64: workers[0].buckets[0].bucket: bucket "../etc": use 1 to 63 letters, digits, '_' and '-'`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., kv: [{binding: F}], buckets: [{binding: F}]}]", `t.yaml:4:73: workers[0].buckets[0].binding: duplicate binding "F"`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., buckets: [{binding: F, bucket: files, s3: {}}]}]", "workers[0].buckets[0].s3.endpoint: endpoint \"\": want https://host[:port]"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., buckets: [{binding: F, s3: {endpoint: \"https://s3.example\", bucket: b, access_key: {from_env: VERGE_TEST_UNSET_VAR}, secret_key: {file: nope}}}]}]", "workers[0].buckets[0].s3.access_key.from_env: environment variable VERGE_TEST_UNSET_VAR is not set"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., buckets: [{binding: F, s3: {endpoint: \"https://s3.example\", access_key: {file: a, from_env: B}}}]}]", "workers[0].buckets[0].s3.access_key: exactly one of file and from_env"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., buckets: [{binding: F, s3: {endpoint: \"https://s3.example\", bucket: b, access_key: {file: a}, secret_key: {from_env: HOME}, region: x, path_style: yes, tls: on}}]}]", "tls"},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., kv: [{binding: J}], queues: {producers: [{binding: J, queue: jobs}]}}]", `workers[0].queues.producers[0].binding: duplicate binding "J"`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {producers: [{binding: J, queue: ../x}]}}]", `t.yaml:4:74: workers[0].queues.producers[0].queue: queue "../x"`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {producers: [{binding: J}]}}]", `workers[0].queues.producers[0].queue: queue is required`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, max_batch_size: 101}]}}]", `t.yaml:4:81: workers[0].queues.consumers[0].max_batch_size: max_batch_size 101 out of range 1..100`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, max_batch_timeout: 61s}]}}]", `workers[0].queues.consumers[0].max_batch_timeout`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, max_retries: -1}]}}]", `workers[0].queues.consumers[0].max_retries: max_retries -1 out of range 0..100`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, retry_delay: 13h}]}}]", `workers[0].queues.consumers[0].retry_delay`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, max_concurrency: 17}]}}]", `workers[0].queues.consumers[0].max_concurrency`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, dead_letter_queue: q}]}}]", `dead_letter_queue "q" is the queue itself`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q}]}}, {name: v, package: ., queues: {consumers: [{queue: q}]}}]", `workers[1].queues.consumers[0].queue: queue "q" already has a consumer (workers[0].queues.consumers[0])`},
		{"routes: [{upstream: app}]\nworkers: [{name: w, package: ., queues: {consumers: [{queue: q, bogus: 1}]}}]", `bogus`},
		{"routes: [{upstream: app}]\nworker_memory_limit: 1MiB", "t.yaml:4:22: worker_memory_limit: worker_memory_limit 1048576 is below 16MiB"},
	}
	for _, c := range cases {
		_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\ngot %v\nwant %q", c.yaml, err, c.want)
		}
	}
}

func TestWorkerQueuesDefaults(t *testing.T) {
	dir := t.TempDir()
	src := "name: w\nqueues:\n  producers: [{binding: JOBS, queue: jobs}]\n  consumers:\n    - {queue: jobs, dead_letter_queue: jobs-dlq}\n    - {queue: other, max_batch_timeout: 0s, max_retries: 0, retry_delay: 30s, max_batch_size: 100, max_concurrency: 4}\n"
	w, err := ParseWorker(filepath.Join(dir, WorkerFile), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c := w.Queues.Consumers[0]
	if c.MaxBatchSize != 10 || c.MaxBatchTimeout.Std() != 5*time.Second || *c.MaxRetries != 3 || c.MaxConcurrency != 1 || c.RetryDelay != 0 || c.DeadLetterQueue != "jobs-dlq" {
		t.Fatalf("defaults: got %+v", c)
	}
	c = w.Queues.Consumers[1]
	if c.MaxBatchSize != 100 || c.MaxBatchTimeout.Std() != 0 || *c.MaxRetries != 0 || c.MaxConcurrency != 4 || c.RetryDelay.Std() != 30*time.Second {
		t.Fatalf("explicit: got %+v", c)
	}
	if w.Queues.Producers[0] != (QueueProducer{Binding: "JOBS", Queue: "jobs"}) {
		t.Fatalf("producer: got %+v", w.Queues.Producers[0])
	}
}

func TestParseWorker(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, WorkerFile)
	w, err := ParseWorker(name, []byte("name: counter\nkv: [{binding: KV}]\ndurable_objects: [{binding: COUNTER, class: Counter}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Package != dir || w.KV[0].Namespace != "KV" || w.DurableObjects[0].Namespace != "counter-Counter" {
		t.Fatalf("got %+v", w)
	}
	_, err = ParseWorker(name, []byte("name: x\nkv:\n  - binding: 1bad\n"))
	if err == nil || !strings.Contains(err.Error(), "worker.yaml:3:14: workers[0].kv[0].binding") {
		t.Fatalf("got %v, want a positioned binding error", err)
	}
	if _, err := ParseWorker(name, []byte("name: x\nbogus: 1\n")); err == nil {
		t.Fatal("unknown field accepted")
	}
}

// TestWorkerDataFromStateDirectory: under systemd's StateDirectory= (ProtectSystem=strict
// makes the config's directory read-only), worker data defaults to $STATE_DIRECTORY; an
// explicit worker_data wins.
func TestWorkerDataFromStateDirectory(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/verge:/var/lib/other")
	c := &Config{}
	c.resolveWorkerPaths("/etc/verge")
	if c.WorkerData != "/var/lib/verge" {
		t.Fatalf("worker data %q, want /var/lib/verge", c.WorkerData)
	}
	c = &Config{WorkerData: "data"}
	c.resolveWorkerPaths("/etc/verge")
	if c.WorkerData != "/etc/verge/data" {
		t.Fatalf("worker data %q, want /etc/verge/data", c.WorkerData)
	}
	t.Setenv("STATE_DIRECTORY", "")
	c = &Config{}
	c.resolveWorkerPaths("/etc/verge")
	if c.WorkerData != "/etc/verge/.verge" {
		t.Fatalf("worker data %q, want /etc/verge/.verge", c.WorkerData)
	}
}
