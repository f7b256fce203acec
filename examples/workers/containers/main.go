// Command containers is a Verge worker whose Durable Object class App runs a container per
// object (docs/containers.md):
//
//	ANY /app/NAME/...           goes to object NAME, which starts its own container (with
//	                            NAME in its environment) and passes the request on to it
//	GET /app/NAME/__state       answers the object's container state (stopped, running, ...)
//	POST /app/NAME/__stop       stops the object's container
//	GET /app/NAME/__exits       lists the exits the object was told of (ContainerExited)
//	ANY /pool/...               goes to one of 3 objects picked at random (sdk.ContainerPool)
//
// The worker passes the client's request to the object and the object passes it to its
// container unchanged, so the host streams the request body both times (a POST of any size
// to /app/NAME/sha256 reaches the container's /sha256 in bounded memory), as it streams the
// response back.
//
// The image is server/ (a small Go HTTP server) built into a FROM scratch image:
//
//	CGO_ENABLED=0 go build -o server/server ./server
//	podman build -t localhost/verge-example-containers:1 server
//
// and worker.yaml binds it to the class:
//
//	durable_objects: [{binding: APP, class: App}]
//	containers:
//	  - {class: App, image: localhost/verge-example-containers:1, port: 8080, sleep_after: 5m}
package main

import (
	"encoding/json"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// App is the Durable Object class: one container per object.
type App struct {
	state *sdk.DurableObjectState
	c     *sdk.Container
}

// Fetch serves the object's own paths and passes anything else to its container.
func (a *App) Fetch(w sdk.ResponseWriter, r *sdk.Request) {
	path := r.Path()
	switch {
	case strings.HasSuffix(path, "/__state"):
		s, err := a.c.State()
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.Write([]byte(s.String()))
		return
	case strings.HasSuffix(path, "/__stop") && r.Method == "POST":
		if err := a.c.Stop(); err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		w.Write([]byte("stopped"))
		return
	case strings.HasSuffix(path, "/__exits"):
		v, _, err := a.state.Storage().Get("exits")
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		if v == nil {
			v = []byte("[]")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(v)
		return
	}
	// The first request starts the container with the object's name in its environment;
	// later starts (after it slept) reuse these options.
	if s, err := a.c.State(); err == nil && s != sdk.ContainerRunning {
		name := r.Header.Get("X-App-Name")
		if err := a.c.Start(&sdk.ContainerStartOptions{Env: map[string]string{"APP_NAME": name}}); err != nil {
			sdk.ErrorResponse(w, "starting the container: "+err.Error(), 503)
			return
		}
	}
	resp, err := a.c.Fetch(r)
	if err != nil {
		sdk.ErrorResponse(w, "container: "+err.Error(), 502)
		return
	}
	sdk.WriteResponse(w, resp)
}

// ContainerExited records the exit in the object's storage (the last 20).
func (a *App) ContainerExited(e sdk.ContainerExit) {
	st := a.state.Storage()
	var exits []sdk.ContainerExit
	if v, ok, _ := st.Get("exits"); ok {
		json.Unmarshal(v, &exits)
	}
	exits = append(exits, e)
	if len(exits) > 20 {
		exits = exits[len(exits)-20:]
	}
	b, _ := json.Marshal(exits)
	st.Put("exits", b)
}

func init() {
	sdk.DefineDurableObject("App", func(s *sdk.DurableObjectState) sdk.DurableObjectHandler {
		return &App{state: s, c: s.Container()}
	})
	sdk.Serve(serve)
}

func serve(w sdk.ResponseWriter, r *sdk.Request) {
	path := r.Path()
	var id sdk.ObjectID
	switch {
	case strings.HasPrefix(path, "/app/"):
		name, _, _ := strings.Cut(strings.TrimPrefix(path, "/app/"), "/")
		if name == "" {
			sdk.ErrorResponse(w, "missing object name", 400)
			return
		}
		id = sdk.ContainerByName("APP", name)
		r.Header.Set("X-App-Name", name)
	case strings.HasPrefix(path, "/pool/"):
		id = sdk.ContainerPool("APP", 3)
	default:
		sdk.ErrorResponse(w, "try /app/NAME/", 404)
		return
	}
	resp, err := id.Fetch(r)
	if err != nil {
		sdk.ErrorResponse(w, err.Error(), 502)
		return
	}
	sdk.WriteResponse(w, resp)
}

func main() {}
