package router

import (
	"maps"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/containers"
)

// ContainerClasses converts a worker's containers section for worker.Config.Containers.
func ContainerClasses(w *config.Worker) []containers.ClassConfig {
	var out []containers.ClassConfig
	for _, c := range w.Containers {
		out = append(out, containers.ClassConfig{
			Class: c.Class, Image: c.Image, Port: c.Port, Env: maps.Clone(c.Env), Args: append([]string(nil), c.Args...),
			CPU: c.Resources.CPU, Memory: int64(c.Resources.Memory),
			SleepAfter: c.SleepAfter.Std(), MaxInstances: c.MaxInstances, StartTimeout: c.StartTimeout.Std(),
		})
	}
	return out
}
