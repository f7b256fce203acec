package router

import (
	"net/http"

	"github.com/verge-edge/verge/ai/local"
)

// localModel is a loaded local model's handler and the model name it serves.
type localModel struct {
	m    *local.Model
	h    http.Handler
	name string
}

// openLocalModel opens the local model at path ("" the built-in one) once per process: a
// reload reuses it. maxConcurrent (the provider's max_concurrency) sets its generation
// slots, also on a model opened before: the last configuration loaded sets them.
func openLocalModel(path string, maxConcurrent int) (*localModel, error) {
	if m, ok := localModels.Load(path); ok {
		lm := m.(*localModel)
		lm.m.SetMaxConcurrent(maxConcurrent)
		return lm, nil
	}
	m, err := local.OpenOptions(path, local.Options{MaxConcurrent: maxConcurrent})
	if err != nil {
		return nil, err
	}
	lm, loaded := localModels.LoadOrStore(path, &localModel{m: m, h: m.Handler(), name: m.Name()})
	if loaded {
		lm.(*localModel).m.SetMaxConcurrent(maxConcurrent)
	}
	return lm.(*localModel), nil
}
