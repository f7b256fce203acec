package containers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/verge-edge/verge/containers"
)

// BenchmarkColdStart measures the first request to a sleeping instance: start (with
// Podman: create the container, publish its port), wait until its port accepts
// connections, and the request's answer. Each iteration stops the instance first (not
// timed). docs/performance.md, Containers.
func BenchmarkColdStart(b *testing.B) {
	b.Run("process", func(b *testing.B) {
		bin := buildServer(b, b.TempDir())
		coldStart(b, &containers.ProcessDriver{}, bin, "bench-process")
	})
	b.Run("podman", func(b *testing.B) {
		p := podman(b)
		buildImage(b, p, "localhost/verge-containers-test:1")
		owner := fmt.Sprintf("bench-%d", os.Getpid())
		cleanupOwner(b, p, owner)
		coldStart(b, p, "localhost/verge-containers-test:1", owner)
	})
}

func coldStart(b *testing.B, d containers.Driver, image, owner string) {
	ctx := context.Background()
	m, err := containers.New(containers.Options{Driver: d, Owner: owner})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(ctx) })
	m.SetClasses("w", []containers.ClassConfig{{Class: "C", Image: image, Port: 8080}})
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if err := m.Stop(ctx, "w", "C", "o"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		addr, release, err := m.Acquire(ctx, "w", "C", "o")
		if err != nil {
			b.Fatal(err)
		}
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		release()
	}
}
