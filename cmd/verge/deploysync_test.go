package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
)

func stored(module []byte, configured []byte) *storedVersion {
	sum := sha256Hex(module)
	return &storedVersion{nuid: "n-" + sum[:8], id: sum[:12], sha: sum, configured: sha256Hex(configured), module: module}
}

// TestDeployRulesAgainstReloads checks which module a reload deploys: the cluster version
// while the configured module is the one it replaced, the configured module once that
// changes (never pushed anywhere), and a refused config changes nothing.
func TestDeployRulesAgainstReloads(t *testing.T) {
	d := newDeploySync(nil, slog.New(slog.DiscardHandler), nil, nil)
	m1, m2, x := []byte("module one"), []byte("module two"), []byte("cluster version")
	reload := func(configured []byte, ok bool) []byte {
		got := d.WorkerModule("app", configured)
		d.commit(ok)
		return got
	}
	if got := reload(m1, true); !bytes.Equal(got, m1) {
		t.Fatalf("first config: deploys %q, want %q", got, m1)
	}
	if src, cv, _ := d.source("app", sha256Hex(m1)[:12]); src != sourceConfig || cv != "" {
		t.Fatalf("before a deploy: source %s %q", src, cv)
	}
	st := stored(x, m1)
	d.stored["app"] = st
	if got := d.desired("app"); !bytes.Equal(got, x) {
		t.Fatalf("stored over m1: desired %q, want the cluster version", got)
	}
	if src, cv, note := d.source("app", st.id); src != sourceCluster || cv != st.id || note != "" {
		t.Fatalf("running the cluster version: %s %s %q", src, cv, note)
	}
	if got := reload(m1, true); !bytes.Equal(got, x) {
		t.Fatalf("reload not touching the module: deploys %q, want the cluster version", got)
	}
	// A refused config leaves the configured module as it was.
	if got := reload(m2, false); !bytes.Equal(got, m2) {
		t.Fatalf("refused config: asked %q", got)
	}
	if got := d.desired("app"); !bytes.Equal(got, x) {
		t.Fatalf("after a refused config: desired %q, want the cluster version", got)
	}
	if got := reload(m2, true); !bytes.Equal(got, m2) {
		t.Fatalf("reload with a changed module: deploys %q, want the configured one", got)
	}
	if src, cv, note := d.source("app", sha256Hex(m2)[:12]); src != sourceConfig || cv != st.id || note != reasonConfigDiffers {
		t.Fatalf("after the module changed: %s %s %q", src, cv, note)
	}
	// Going back to the module the cluster version replaced serves it again.
	if got := reload(m1, true); !bytes.Equal(got, x) {
		t.Fatalf("back to m1: deploys %q, want the cluster version", got)
	}
	// A worker the config no longer has deploys nothing.
	reload(nil, true)
	d.mu.Lock()
	delete(d.conf, "app")
	d.mu.Unlock()
	if got := d.desired("app"); got != nil {
		t.Fatalf("unconfigured worker: desired %q", got)
	}
}

// TestParseStoredRefusesBadMetadata checks the metadata a stored version must carry.
func TestParseStoredRefusesBadMetadata(t *testing.T) {
	sum := sha256Hex([]byte("m"))
	conf := sha256Hex([]byte("c"))
	good := map[string]string{metaVersion: sum[:12], metaSHA256: sum, metaConfigured: conf, metaNode: "n1", metaDeployed: time.Now().Format(time.RFC3339Nano)}
	for _, tc := range []struct {
		name string
		edit func(m map[string]string)
		want string // "" for accepted
	}{
		{"good", func(map[string]string) {}, ""},
		{"version not the hash", func(m map[string]string) { m[metaVersion] = conf[:12] }, "first 12 digits"},
		{"no hash", func(m map[string]string) { delete(m, metaSHA256) }, "verge-sha256"},
		{"hash not hex", func(m map[string]string) { m[metaSHA256] = strings.Repeat("z", 64) }, "verge-sha256"},
		{"no configured hash", func(m map[string]string) { delete(m, metaConfigured) }, "verge-configured"},
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		tc.edit(m)
		info := &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "app", Metadata: m}, NUID: "x"}
		st, err := parseStored(info)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && (st.id != sum[:12] || st.configured != conf || st.node != "n1"):
			t.Errorf("%s: got %+v", tc.name, st)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

// TestDeploySyncWatchAfterReconnect runs deploySync on a client of a one-node cluster whose
// server is restarted: versions stored after the restart still reach it (the watch is
// re-established), and deploy checks count the nodes that answer.
func TestDeploySyncWatchAfterReconnect(t *testing.T) {
	c := clustertest.Start(t, 1)
	url := c.Nodes[0].ClientURL()
	cl, err := cluster.Start(context.Background(), cluster.Options{Node: "edge", URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var mu sync.Mutex
	runningID := ""
	applied := make(chan []byte, 16)
	var d *deploySync
	d = newDeploySync(cl, slog.New(slog.DiscardHandler), func(_ context.Context, name string) error {
		m := d.desired(name)
		mu.Lock()
		runningID = sha256Hex(m)[:12]
		mu.Unlock()
		applied <- m
		return nil
	}, func(string) string {
		mu.Lock()
		defer mu.Unlock()
		return runningID
	})
	conf := []byte("configured")
	d.WorkerModule("app", conf)
	d.commit(true)
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	defer d.close()

	put := func(js jetstream.JetStream, module []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var obs jetstream.ObjectStore
		for { // the bucket is created by d's watch
			if obs, err = js.ObjectStore(ctx, deployBucket); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("bucket: %v", err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval; ctx bounds it
		}
		sum := sha256Hex(module)
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "app", Metadata: map[string]string{
			metaVersion: sum[:12], metaSHA256: sum, metaConfigured: sha256Hex(conf), metaNode: "test",
		}}, bytes.NewReader(module)); err != nil {
			t.Fatal(err)
		}
	}
	await := func(want []byte) {
		t.Helper()
		guard := time.After(60 * time.Second)
		for {
			select {
			case got := <-applied:
				if bytes.Equal(got, want) {
					return
				}
			case <-guard:
				t.Fatalf("%q was never deployed", want)
			}
		}
	}
	v1 := []byte("version one")
	put(c.Nodes[0].JetStream(), v1)
	await(v1)

	// The deploying node counts the nodes that run a version: here the client runs it and
	// the server node (a member that runs no deploySync) does not answer.
	defer func(w time.Duration) { deployConfirmWait = w }(deployConfirmWait)
	deployConfirmWait = 3 * time.Second // n1 never answers: the whole wait is spent
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := d.confirm(ctx, "app", sha256Hex(v1)[:12])
	if res.Nodes != 1 || res.Members != 2 || len(res.NotRunning) != 1 || res.NotRunning[0].Node != "n1" {
		t.Fatalf("confirm: %+v, want 1 of 2 nodes running, n1 not answering", res)
	}

	c.Kill(0)
	n := c.Restart(t, 0)
	if err := n.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	v2 := []byte("version two")
	put(n.JetStream(), v2)
	await(v2)
	if src, cv, _ := d.source("app", sha256Hex(v2)[:12]); src != sourceCluster || cv != sha256Hex(v2)[:12] {
		t.Fatalf("after the reconnect: %s %s", src, cv)
	}
}
