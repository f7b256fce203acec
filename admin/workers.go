package admin

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"
)

// WorkerDeployer is implemented by Controllers whose server runs workers. Without it the
// worker endpoints answer 501.
type WorkerDeployer interface {
	// Workers returns the deployed workers.
	Workers() []WorkerStatus
	// DeployWorker makes module (a WebAssembly binary) the new version of the configured
	// worker name, without a restart: requests in flight finish on the old version. An
	// unknown name is an error wrapping ErrNotFound; an invalid module leaves the old
	// version serving.
	DeployWorker(ctx context.Context, name string, module []byte) (WorkerStatus, error)
}

// ClusterDeployer is implemented by Controllers whose servers share worker deployments
// across a cluster. Without it DELETE /workers/{name}/deployment answers 501.
type ClusterDeployer interface {
	// DropDeployment deletes the cluster's stored version of worker name, so that every
	// node serves its configured module again. No stored version: an error wrapping
	// ErrNotFound; a server outside a cluster: an error wrapping errors.ErrUnsupported;
	// the cluster unreachable: an error wrapping ErrClusterUnavailable.
	DropDeployment(ctx context.Context, name string) (*ClusterDeploy, error)
}

// ErrClusterUnavailable is wrapped by WorkerDeployer and ClusterDeployer errors when the
// cluster's store did not answer; the API answers 503.
var ErrClusterUnavailable = errors.New("cluster unavailable")

// ClusterDeploy is how a deployment through a cluster node went.
type ClusterDeploy struct {
	// Stored is true when the version is in the cluster's store (false after a drop).
	Stored bool `json:"stored"`
	// Version is the stored version's id; empty after a drop.
	Version string `json:"version,omitempty"`
	// Nodes counts the nodes that reported running it (after a drop: their configured
	// module) within the deploy's wait.
	Nodes int `json:"nodes"`
	// Members counts the nodes that answered a ping just before.
	Members int `json:"members"`
	// NotRunning lists the members that did not report running it, with their reason.
	NotRunning []NodeNote `json:"not_running,omitempty"`
}

// NodeNote is one node with a reason.
type NodeNote struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// WorkerStatus describes a worker's current version.
type WorkerStatus struct {
	// Name is the worker's name.
	Name string `json:"name"`
	// Version is the first 12 hex digits of the module's SHA-256.
	Version string `json:"version"`
	// Deployed is when the version was deployed.
	Deployed time.Time `json:"deployed"`
	// CompileMillis is how long compiling (or loading the cached compilation) took.
	CompileMillis float64 `json:"compile_ms"`
	// InstantiateMillis is how long creating the first instance took.
	InstantiateMillis float64 `json:"instantiate_ms"`
	// Instances counts the pooled instances.
	Instances int `json:"instances"`
	// Source says where the running version came from on a cluster node: "config" (the
	// configured module) or "cluster" (a version deployed through a node's admin API and
	// stored in the cluster). Empty outside a cluster.
	Source string `json:"source,omitempty"`
	// ClusterVersion is the id of the version stored in the cluster, when there is one.
	ClusterVersion string `json:"cluster_version,omitempty"`
	// ClusterNote says why this node does not run the stored version, when it does not.
	ClusterNote string `json:"cluster_note,omitempty"`
	// Cluster is set in the answer of a deploy through a cluster node.
	Cluster *ClusterDeploy `json:"cluster,omitempty"`
}

// MaxWorkerModuleBytes bounds a module uploaded to PUT /workers/{name}.
const MaxWorkerModuleBytes = 64 << 20

// moduleUploadTimeout bounds the reading of a module's body, in place of the server's
// 30-second read timeout: 64 MiB take 30 s at 18 Mbit/s, so a large module over a modest
// link would be cut off.
const moduleUploadTimeout = 10 * time.Minute

func (s *Server) workers(w http.ResponseWriter, _ *http.Request) {
	d, ok := s.Controller.(WorkerDeployer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server runs no workers")
		return
	}
	list := d.Workers()
	if list == nil {
		list = []WorkerStatus{}
	}
	writeJSON(w, http.StatusOK, list)
}

// deployWorker takes the module as the request body (Content-Type application/wasm).
func (s *Server) deployWorker(w http.ResponseWriter, r *http.Request) {
	d, ok := s.Controller.(WorkerDeployer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server runs no workers")
		return
	}
	name := r.PathValue("name")
	if r.ContentLength > MaxWorkerModuleBytes {
		// Refused before reading: the body would only be read to be thrown away.
		writeError(w, http.StatusRequestEntityTooLarge, "module larger than 64MiB")
		return
	}
	// The request is authenticated by now, so it may take longer than others to send; the
	// answer then still gets the server's usual time to be written.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(moduleUploadTimeout))
	rc.SetWriteDeadline(time.Now().Add(moduleUploadTimeout + writeTimeout))
	// Sized from Content-Length when given: a module is megabytes, which io.ReadAll would
	// copy over and over as it grows.
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= MaxWorkerModuleBytes {
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxWorkerModuleBytes))
	module := buf.Bytes()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "module larger than 64MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "reading module: "+err.Error())
		return
	}
	if len(module) == 0 {
		writeError(w, http.StatusBadRequest, "empty module: send the .wasm file as the request body")
		return
	}
	st, err := d.DeployWorker(r.Context(), name, module)
	if err != nil {
		writeError(w, deployStatus(err, http.StatusUnprocessableEntity), err.Error())
		return
	}
	s.logger().Info("admin: worker deployed", "remote", r.RemoteAddr, "worker", name, "version", st.Version, "bytes", len(module))
	writeJSON(w, http.StatusOK, st)
}

// dropDeployment deletes the cluster's stored version of a worker.
func (s *Server) dropDeployment(w http.ResponseWriter, r *http.Request) {
	d, ok := s.Controller.(ClusterDeployer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server shares no deployments")
		return
	}
	name := r.PathValue("name")
	res, err := d.DropDeployment(r.Context(), name)
	if err != nil {
		writeError(w, deployStatus(err, http.StatusInternalServerError), err.Error())
		return
	}
	s.logger().Info("admin: cluster deployment dropped", "remote", r.RemoteAddr, "worker", name)
	writeJSON(w, http.StatusOK, res)
}

// deployStatus is the status of a failed deployment operation: 501 unsupported, 404 unknown
// worker or nothing stored, 503 cluster unreachable, otherwise other.
func deployStatus(err error, other int) int {
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrClusterUnavailable):
		return http.StatusServiceUnavailable
	}
	return other
}
