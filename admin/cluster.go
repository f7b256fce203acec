package admin

import (
	"context"
	"errors"
	"net/http"
)

// ClusterStatuser is implemented by Controllers that can be part of a cluster. Without it
// GET /cluster answers 501.
type ClusterStatuser interface {
	// ClusterStatus returns the cluster's state as this node sees it, a value encoded as
	// JSON (the verge binary returns a cluster.Status). A node without a cluster returns an
	// error wrapping ErrNoCluster (the API answers 404).
	ClusterStatus(ctx context.Context) (any, error)
}

// clusterStatus answers GET /cluster.
func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Controller.(ClusterStatuser)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server has no cluster support")
		return
	}
	st, err := c.ClusterStatus(r.Context())
	switch {
	case errors.Is(err, ErrNoCluster):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}
