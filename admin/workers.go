package admin

import (
	"context"
	"errors"
	"io"
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
}

// MaxWorkerModuleBytes bounds a module uploaded to PUT /workers/{name}.
const MaxWorkerModuleBytes = 64 << 20

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
	module, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWorkerModuleBytes))
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
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	s.logger().Info("admin: worker deployed", "remote", r.RemoteAddr, "worker", name, "version", st.Version, "bytes", len(module))
	writeJSON(w, http.StatusOK, st)
}
