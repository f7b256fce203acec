package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/verge-edge/verge/cron"
)

// Defaults of worker settings (see also the worker package).
const (
	// DefaultWorkerData is the worker data directory, relative to the config file.
	DefaultWorkerData = ".verge"
	// DefaultWorkerMemory is an instance's memory cap.
	DefaultWorkerMemory = 128 << 20
	// MinWorkerMemoryLimit is the least worker_memory_limit accepted.
	MinWorkerMemoryLimit = 16 << 20
)

// Worker is a WebAssembly worker that routes can send requests to (route field worker).
type Worker struct {
	// Name identifies the worker in routes and the admin API. Required, unique.
	Name string `yaml:"name"`
	// Module is the path of a compiled module (.wasm). Exactly one of Module and Package is
	// required.
	Module string `yaml:"module"`
	// Package is the directory of a Go worker package, built at load with the local Go
	// toolchain (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared).
	Package string `yaml:"package"`
	// Env holds plain environment variables for the worker (sdk.Env).
	Env map[string]string `yaml:"env"`
	// Secrets are variables read from files or the server's environment, never written in
	// the config.
	Secrets []WorkerSecret `yaml:"secrets"`
	// KV binds KV namespaces.
	KV []WorkerKV `yaml:"kv"`
	// DurableObjects binds Durable Object namespaces of classes the worker defines.
	DurableObjects []WorkerDurable `yaml:"durable_objects"`
	// Buckets binds object storage buckets (sdk.Bucket): files under the worker data
	// directory, or JetStream object stores in a cluster.
	Buckets []WorkerBucket `yaml:"buckets"`
	// Queues binds queues to send to and makes the worker the consumer of queues.
	Queues WorkerQueues `yaml:"queues"`
	// Limits bound each invocation.
	Limits WorkerLimits `yaml:"limits"`
	// Fetch decides where the worker's subrequests may connect. Empty means the public
	// internet only.
	Fetch WorkerFetch `yaml:"fetch"`
	// Triggers run the worker's scheduled handler (sdk.HandleScheduled) on a schedule.
	Triggers WorkerTriggers `yaml:"triggers"`
	// Services bind other workers of this config, called in-process (sdk.Service).
	Services []WorkerService `yaml:"services"`
	// Containers bind container images to Durable Object classes (containers.go).
	Containers []WorkerContainer `yaml:"containers"`
	// AI binds the ai providers the worker may call (sdk.AI; ai.go, docs/ai.md). Nil means
	// none.
	AI *WorkerAI `yaml:"ai"`
}

// WorkerTriggers are a worker's cron triggers.
type WorkerTriggers struct {
	// Crons are five-field cron expressions (minute hour day-of-month month day-of-week,
	// with names, ranges, lists and steps, or a macro such as @hourly), evaluated in UTC.
	// Each slot runs once, on one node of a cluster. Empty means none. At most
	// MaxWorkerCrons.
	Crons []string `yaml:"crons"`
}

// MaxWorkerCrons bounds a worker's cron triggers.
const MaxWorkerCrons = 32

// WorkerService binds another worker as a service.
type WorkerService struct {
	// Binding is the name the worker uses (sdk.Service). Required.
	Binding string `yaml:"binding"`
	// Service names the worker called, one of the workers section. Required; the worker
	// itself is allowed (a chain of calls nests at most 16 deep).
	Service string `yaml:"service"`
}

// WorkerFetch is a worker's subrequest policy. By default loopback, private, link-local
// (cloud metadata included), carrier-grade NAT, multicast and other special-purpose
// addresses, and Verge's own listeners, are refused (docs/workers.md, Subrequests).
type WorkerFetch struct {
	// Allow opens destinations: CIDR prefixes ("10.0.0.0/8"), addresses ("127.0.0.1"),
	// address and port ("127.0.0.1:8080", "[::1]:8080") or host name and port
	// ("api.internal:8443"). The admin listener is never reachable. Empty by default.
	Allow []string `yaml:"allow"`
}

// checkFetchAllow validates one WorkerFetch.Allow entry (the worker package applies it).
func checkFetchAllow(s string) error {
	if _, err := netip.ParsePrefix(s); err == nil {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return fmt.Errorf("fetch allow %q: port 0", s)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/[]") {
		return fmt.Errorf("fetch allow %q: want a CIDR prefix, an IP address, ip:port or host:port", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("fetch allow %q: bad port %q", s, port)
	}
	return nil
}

// WorkerSecret is one secret variable: from a file (its content, without a trailing newline)
// or from an environment variable of the server process. Exactly one of File and FromEnv.
type WorkerSecret struct {
	// Name is the variable's name for the worker. Required.
	Name string `yaml:"name"`
	// File is the path of the file holding the value.
	File string `yaml:"file"`
	// FromEnv names the server's environment variable holding the value.
	FromEnv string `yaml:"from_env"`
}

// WorkerKV binds a KV namespace.
type WorkerKV struct {
	// Binding is the name the worker uses (sdk.KV). Required.
	Binding string `yaml:"binding"`
	// Namespace is the stored namespace's name. Empty means the binding.
	Namespace string `yaml:"namespace"`
}

// WorkerDurable binds a Durable Object namespace.
type WorkerDurable struct {
	// Binding is the name the worker uses (sdk.DurableObject). Required.
	Binding string `yaml:"binding"`
	// Class is the class the worker defines (sdk.DefineDurableObject). Required.
	Class string `yaml:"class"`
	// Namespace names the objects' storage. Empty means "<worker>-<class>".
	Namespace string `yaml:"namespace"`
}

// WorkerBucket binds an object storage bucket.
type WorkerBucket struct {
	// Binding is the name the worker uses (sdk.Bucket). Required.
	Binding string `yaml:"binding"`
	// Bucket is the stored bucket's name: 1 to 63 letters, digits, '_' and '-'. Empty
	// means the binding. Workers that name the same bucket share its objects.
	Bucket string `yaml:"bucket"`
	// S3, when set, keeps the bucket's objects in a bucket of an S3-compatible service
	// instead of under the worker data directory (or the cluster's JetStream).
	S3 *WorkerS3 `yaml:"s3"`
}

// WorkerS3 locates a bucket of an S3-compatible service (AWS S3, MinIO, R2's S3 API, ...).
type WorkerS3 struct {
	// Endpoint is the service's URL, https://host[:port] (http:// only for a service on a
	// private network). Required.
	Endpoint string `yaml:"endpoint"`
	// Region is the bucket's region. Empty means us-east-1.
	Region string `yaml:"region"`
	// Bucket is the remote bucket, which must exist. Required.
	Bucket string `yaml:"bucket"`
	// AccessKey and SecretKey are the credentials, each from a file or from the server's
	// environment (never written in the config). Both required.
	AccessKey SecretSource `yaml:"access_key"`
	SecretKey SecretSource `yaml:"secret_key"`
	// PathStyle addresses the bucket in the URL's path rather than its host name (MinIO
	// and most self-hosted services need it). Default false.
	PathStyle bool `yaml:"path_style"`
}

// SecretSource is a value read from a file (its content, without a trailing newline) or from
// an environment variable of the server process. Exactly one of File and FromEnv.
type SecretSource struct {
	File    string `yaml:"file"`
	FromEnv string `yaml:"from_env"`
}

// checkSecretSource validates s at field path q.
func (v *validator) checkSecretSource(q string, s SecretSource) {
	switch {
	case (s.File == "") == (s.FromEnv == ""):
		v.errf(q, "exactly one of file and from_env is required")
	case s.File != "":
		if _, err := os.Stat(s.File); err != nil {
			v.errf(q+".file", "%v", err)
		}
	default:
		if _, ok := os.LookupEnv(s.FromEnv); !ok {
			v.errf(q+".from_env", "environment variable %s is not set", s.FromEnv)
		}
	}
}

// bucketName is the form of WorkerBucket.Bucket (objstore.ValidBucketName).
var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// WorkerLimits bound a worker's invocations. Zero fields take the defaults.
type WorkerLimits struct {
	// CPUTime bounds the guest's execution time per request, excluding time spent waiting
	// for storage, subrequests and Durable Objects. Zero means 100ms.
	CPUTime Duration `yaml:"cpu_time"`
	// WallTime bounds a whole invocation, waitUntil work included. Zero means 30s.
	WallTime Duration `yaml:"wall_time"`
	// Memory caps an instance's memory. Zero means 128MiB.
	Memory Size `yaml:"memory"`
	// Subrequests caps fetches per request. Zero means 50.
	Subrequests int `yaml:"subrequests"`
	// MaxInstances caps the instances serving requests concurrently. Zero means 16.
	MaxInstances int `yaml:"max_instances"`
	// ObjectsPerInstance caps the live Durable Objects sharing one instance. Zero means 16;
	// 1 gives each object its own instance.
	ObjectsPerInstance int `yaml:"objects_per_instance"`
}

// Values of Route.WorkerOnError.
const (
	// WorkerOnErrorFail answers a failed worker with a 5xx status.
	WorkerOnErrorFail = "error"
	// WorkerOnErrorOrigin passes the request to the route's upstream when the worker fails
	// before responding (and before reading the request body).
	WorkerOnErrorOrigin = "origin"
)

var bindingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
var storageName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func (c *Config) resolveWorkerPaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if c.WorkerData == "" {
		c.WorkerData = DefaultWorkerData
		// systemd's StateDirectory= names the unit's writable state directory; next to
		// the config is read-only there (ProtectSystem=strict).
		if sd, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); filepath.IsAbs(sd) {
			c.WorkerData = sd
		}
	}
	abs(&c.WorkerData)
	c.resolveContainerPaths(dir)
	for i := range c.Workers {
		w := &c.Workers[i]
		abs(&w.Module)
		abs(&w.Package)
		for j := range w.Secrets {
			abs(&w.Secrets[j].File)
		}
		for j := range w.Buckets {
			if s := w.Buckets[j].S3; s != nil {
				abs(&s.AccessKey.File)
				abs(&s.SecretKey.File)
			}
		}
	}
}

func (c *Config) setWorkerDefaults() {
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Worker != "" && r.WorkerOnError == "" {
			r.WorkerOnError = WorkerOnErrorFail
		}
	}
	for i := range c.Workers {
		w := &c.Workers[i]
		for j := range w.KV {
			if w.KV[j].Namespace == "" {
				w.KV[j].Namespace = w.KV[j].Binding
			}
		}
		for j := range w.DurableObjects {
			if d := &w.DurableObjects[j]; d.Namespace == "" {
				d.Namespace = w.Name + "-" + d.Class
			}
		}
		for j := range w.Buckets {
			if w.Buckets[j].Bucket == "" {
				w.Buckets[j].Bucket = w.Buckets[j].Binding
			}
		}
		if w.Limits.Memory == 0 {
			w.Limits.Memory = DefaultWorkerMemory
		}
		setQueueDefaults(w)
		setContainerDefaults(w)
	}
}

// workers validates the workers section and returns the worker names.
func (v *validator) workers() map[string]bool {
	if m := v.c.WorkerMemoryLimit; m != 0 && m < MinWorkerMemoryLimit {
		v.errf("worker_memory_limit", "worker_memory_limit %d is below %s: no instance could start", m, "16MiB")
	}
	names := map[string]bool{}
	consumed := map[string]string{}
	for i := range v.c.Workers {
		w := &v.c.Workers[i]
		p := fmt.Sprintf("workers[%d]", i)
		switch {
		case w.Name == "":
			v.errf(p+".name", "name is required")
		case names[w.Name]:
			v.errf(p+".name", "duplicate worker name %q", w.Name)
		case !storageName.MatchString(w.Name):
			v.errf(p+".name", "worker name %q: use letters, digits, '_', '-' and '.'", w.Name)
		}
		names[w.Name] = true
		switch {
		case (w.Module == "") == (w.Package == ""):
			v.errf(p, "exactly one of module and package is required")
		case w.Module != "":
			if _, err := os.Stat(w.Module); err != nil {
				v.errf(p+".module", "%v", err)
			}
		default:
			if st, err := os.Stat(w.Package); err != nil || !st.IsDir() {
				v.errf(p+".package", "%s is not a directory", w.Package)
			}
		}
		bindings := map[string]bool{}
		bind := func(q, b string) {
			if !bindingName.MatchString(b) {
				v.errf(q, "binding %q: use letters, digits and '_', not starting with a digit", b)
			} else if bindings[b] {
				v.errf(q, "duplicate binding %q", b)
			}
			bindings[b] = true
		}
		for name := range w.Env {
			bind(p+".env", name)
		}
		for j, s := range w.Secrets {
			q := fmt.Sprintf("%s.secrets[%d]", p, j)
			bind(q+".name", s.Name)
			switch {
			case (s.File == "") == (s.FromEnv == ""):
				v.errf(q, "exactly one of file and from_env is required")
			case s.File != "":
				if _, err := os.Stat(s.File); err != nil {
					v.errf(q+".file", "%v", err)
				}
			default:
				if _, ok := os.LookupEnv(s.FromEnv); !ok {
					v.errf(q+".from_env", "environment variable %s is not set", s.FromEnv)
				}
			}
		}
		for j, k := range w.KV {
			q := fmt.Sprintf("%s.kv[%d]", p, j)
			bind(q+".binding", k.Binding)
			if !storageName.MatchString(k.Namespace) {
				v.errf(q+".namespace", "namespace %q: use letters, digits, '_', '-' and '.'", k.Namespace)
			}
		}
		for j, d := range w.DurableObjects {
			q := fmt.Sprintf("%s.durable_objects[%d]", p, j)
			bind(q+".binding", d.Binding)
			if d.Class == "" {
				v.errf(q+".class", "class is required")
			}
			if !storageName.MatchString(d.Namespace) {
				v.errf(q+".namespace", "namespace %q: use letters, digits, '_', '-' and '.'", d.Namespace)
			}
		}
		if len(w.Triggers.Crons) > MaxWorkerCrons {
			v.errf(p+".triggers.crons", "%d cron triggers exceed %d", len(w.Triggers.Crons), MaxWorkerCrons)
		}
		crons := map[string]bool{}
		for j, c := range w.Triggers.Crons {
			q := fmt.Sprintf("%s.triggers.crons[%d]", p, j)
			if _, err := cron.Parse(c); err != nil {
				v.errf(q, "cron %q: %v", c, err)
			} else if crons[c] {
				v.errf(q, "duplicate cron %q", c)
			}
			crons[c] = true
		}
		v.workerContainers(p, w)
		for j, s := range w.Services {
			q := fmt.Sprintf("%s.services[%d]", p, j)
			bind(q+".binding", s.Binding)
			if s.Service == "" {
				v.errf(q+".service", "service is required (the name of a worker)")
			}
		}
		for j, b := range w.Buckets {
			q := fmt.Sprintf("%s.buckets[%d]", p, j)
			bind(q+".binding", b.Binding)
			if !bucketName.MatchString(b.Bucket) {
				v.errf(q+".bucket", "bucket %q: use 1 to 63 letters, digits, '_' and '-'", b.Bucket)
			}
			if s := b.S3; s != nil {
				if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
					v.errf(q+".s3.endpoint", "endpoint %q: want https://host[:port]", s.Endpoint)
				}
				if s.Bucket == "" {
					v.errf(q+".s3.bucket", "bucket is required")
				}
				v.checkSecretSource(q+".s3.access_key", s.AccessKey)
				v.checkSecretSource(q+".s3.secret_key", s.SecretKey)
			}
		}
		v.workerQueues(p, w, bind, consumed)
		l := &w.Limits
		if l.CPUTime < 0 || l.WallTime < 0 || l.Subrequests < 0 || l.MaxInstances < 0 || l.ObjectsPerInstance < 0 {
			v.errf(p+".limits", "limits must not be negative")
		}
		if l.Memory < 1<<20 || l.Memory > 4<<30 {
			v.errf(p+".limits.memory", "memory %d out of range 1MiB..4GiB", l.Memory)
		}
		for j, a := range w.Fetch.Allow {
			if err := checkFetchAllow(a); err != nil {
				v.errf(fmt.Sprintf("%s.fetch.allow[%d]", p, j), "%v", err)
			}
		}
		if l.ObjectsPerInstance > 1024 {
			v.errf(p+".limits.objects_per_instance", "objects_per_instance %d exceeds 1024", l.ObjectsPerInstance)
		}
		if l.Subrequests > 10000 {
			v.errf(p+".limits.subrequests", "subrequests %d exceed 10000", l.Subrequests)
		}
	}
	if !v.standalone {
		for i, w := range v.c.Workers {
			for j, s := range w.Services {
				if s.Service != "" && !names[s.Service] {
					v.errf(fmt.Sprintf("workers[%d].services[%d].service", i, j), "unknown worker %q", s.Service)
				}
			}
		}
	}
	return names
}

// routeWorker validates a route's worker action and returns how many actions it adds: 1, or
// 0 when the route has none or uses its upstream as the fallback.
func (v *validator) routeWorker(p string, r *Route, workers map[string]bool) int {
	if r.Worker == "" {
		if r.WorkerOnError != "" {
			v.errf(p+".worker_on_error", "worker_on_error needs worker")
		}
		return 0
	}
	if !workers[r.Worker] {
		v.errf(p+".worker", "unknown worker %q", r.Worker)
	}
	switch r.WorkerOnError {
	case WorkerOnErrorFail:
		return 1
	case WorkerOnErrorOrigin:
		if r.Upstream == "" {
			v.errf(p+".worker_on_error", "worker_on_error: origin needs the route's upstream")
		}
		return 0
	}
	v.errf(p+".worker_on_error", "worker_on_error %q (want error or origin)", r.WorkerOnError)
	return 1
}

// WorkerFile is the name `verge dev` looks for in a worker's package directory: one entry of
// the workers section (name, bindings, env, secrets, limits) on its own.
const WorkerFile = "worker.yaml"

// ParseWorker decodes, defaults and validates a worker definition file (see WorkerFile).
// Relative paths are resolved against the file's directory; without module and package, the
// package is that directory.
func ParseWorker(name string, data []byte) (*Worker, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, ErrorList{&Error{File: name, Pos: yamlErrPos(err), Msg: yamlErrMsg(err)}}
	}
	var w Worker
	d := &decoder{file: name, pos: map[string]Pos{}}
	if len(root.Content) > 0 {
		d.decode(&root, reflect.ValueOf(&w).Elem(), "")
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	c := &Config{File: name, Workers: []Worker{w}, pos: map[string]Pos{}}
	for k, p := range d.pos {
		if k == "" {
			c.pos["workers[0]"] = p
		} else {
			c.pos["workers[0]."+k] = p
		}
	}
	dir := filepath.Dir(name)
	if w.Module == "" && w.Package == "" {
		c.Workers[0].Package = dir
	}
	c.resolveWorkerPaths(dir)
	c.setWorkerDefaults()
	// A worker file stands alone: its services name workers of the server it joins.
	v := &validator{c: c, standalone: true}
	v.workers()
	if len(v.errs) > 0 {
		v.errs.sort()
		return nil, v.errs
	}
	return &c.Workers[0], nil
}
