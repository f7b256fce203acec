package router

import (
	"net/http"

	"github.com/verge-edge/verge/ai/local"
)

// localModel is a loaded local model's handler and the model name it serves.
type localModel struct {
	h    http.Handler
	name string
}

// openLocalModel opens the local model at path ("" the built-in one) once per process: a
// reload reuses it.
func openLocalModel(path string) (*localModel, error) {
	if m, ok := localModels.Load(path); ok {
		return m.(*localModel), nil
	}
	m, err := local.Open(path)
	if err != nil {
		return nil, err
	}
	lm, _ := localModels.LoadOrStore(path, &localModel{h: m.Handler(), name: m.Name()})
	return lm.(*localModel), nil
}
