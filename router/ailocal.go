package router

import (
	"errors"
	"net/http"
)

// localModel returns the handler of the local model at path ("" the built-in one).
func localModel(path string) (http.Handler, error) {
	if h, ok := localModels.Load(path); ok {
		return h.(http.Handler), nil
	}
	return nil, errors.New("type local: the local model is not in this build yet")
}
