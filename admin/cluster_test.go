package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// clusterController is a purging controller on a node of a cluster of three.
type clusterController struct {
	*purgingController
	publishErr error
	published  []PurgeRequest
	status     any
	statusErr  error
}

func (c *clusterController) PublishPurge(_ context.Context, req PurgeRequest, local PurgeCount) (ClusterPurgeResult, error) {
	c.published = append(c.published, req)
	self := NodePurge{Node: "n2", PurgeCount: local}
	if c.publishErr != nil {
		return ClusterPurgeResult{Node: "n2", Nodes: []NodePurge{self}, Members: []string{"n2"}}, c.publishErr
	}
	return ClusterPurgeResult{
		Node: "n2", Sequence: 7,
		Nodes: []NodePurge{
			{Node: "n1", PurgeCount: PurgeCount{Objects: 1, Memory: 1}},
			self,
			{Node: "n4", Error: "disk full"},
		},
		Members: []string{"n1", "n2", "n3", "n4"},
		Missing: []string{"n3"},
	}, nil
}

func (c *clusterController) ClusterStatus(context.Context) (any, error) { return c.status, c.statusErr }

func TestClusterPurgeAnswer(t *testing.T) {
	cc := &clusterController{purgingController: &purgingController{fakeController: &fakeController{ready: true}}}
	base := startServer(t, &Server{Controller: cc})
	code, _, body := do(t, "POST", base+"/cache/purge", "", strings.NewReader(`{"tags":["t"]}`))
	var got PurgeResult
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("got %d %s (%v)", code, body, err)
	}
	// This node's count stays in purged/memory/disk; a node that reported an error is
	// not counted as having applied the purge.
	if got.Objects != 2 || got.Node != "n2" || got.Nodes != 2 || got.Members != 4 || got.Sequence != 7 ||
		len(got.PerNode) != 3 || got.PerNode[2].Error != "disk full" || fmt.Sprint(got.Missing) != "[n3]" || got.Error != "" {
		t.Fatalf("answer %s", body)
	}
	if len(cc.published) != 1 || cc.published[0].Tags[0] != "t" {
		t.Fatalf("published %+v", cc.published)
	}

	// Unreachable cluster: applied here, 503 with the local count and the reason.
	cc.publishErr = errors.New("cluster unavailable: not connected")
	code, _, body = do(t, "POST", base+"/cache/purge", "", strings.NewReader(`{"all":true}`))
	got = PurgeResult{}
	json.Unmarshal([]byte(body), &got)
	if code != 503 || got.Objects != 2 || got.Nodes != 1 || !strings.Contains(got.Error, "purged on this node only") ||
		!strings.Contains(got.Error, "not connected") || len(cc.calls) != 2 {
		t.Fatalf("unreachable cluster: got %d %s, calls %q", code, body, cc.calls)
	}

	// Not in a cluster: the single-node answer, unchanged.
	cc.publishErr = fmt.Errorf("x: %w", ErrNoCluster)
	code, _, body = do(t, "POST", base+"/cache/purge", "", strings.NewReader(`{"all":true}`))
	if code != 200 || strings.TrimSpace(body) != `{"purged":2,"memory":2,"disk":1}` {
		t.Fatalf("no cluster: got %d %s", code, body)
	}

	// A rejected request is not published.
	n := len(cc.published)
	if code, _, _ := do(t, "POST", base+"/cache/purge", "", strings.NewReader(`{"urls":["/rel"]}`)); code != 400 || len(cc.published) != n {
		t.Fatalf("rejected purge: %d, published %d times", code, len(cc.published)-n)
	}
}

func TestClusterStatusEndpoint(t *testing.T) {
	cc := &clusterController{purgingController: &purgingController{fakeController: &fakeController{ready: true}},
		status: map[string]any{"node": "n2", "members": []string{"n1", "n2"}}}
	base := startServer(t, &Server{Controller: cc, Token: "s3cret-token-0123456789"})
	if code, _, _ := do(t, "GET", base+"/cluster", "", nil); code != 401 {
		t.Fatalf("unauthenticated: %d, want 401", code)
	}
	code, h, body := do(t, "GET", base+"/cluster", "s3cret-token-0123456789", nil)
	if code != 200 || h.Get("Content-Type") != "application/json" || strings.TrimSpace(body) != `{"members":["n1","n2"],"node":"n2"}` {
		t.Fatalf("got %d %s", code, body)
	}
	cc.statusErr = fmt.Errorf("status: %w", ErrNoCluster)
	if code, _, body := do(t, "GET", base+"/cluster", "s3cret-token-0123456789", nil); code != 404 || !strings.Contains(body, "not part of a cluster") {
		t.Fatalf("no cluster: got %d %s", code, body)
	}
	if code, _, _ := do(t, "POST", base+"/cluster", "s3cret-token-0123456789", strings.NewReader("{}")); code != 405 {
		t.Fatalf("POST /cluster: %d, want 405", code)
	}
	plain := startServer(t, &Server{Controller: &fakeController{ready: true}})
	if code, _, _ := do(t, "GET", plain+"/cluster", "", nil); code != 501 {
		t.Fatalf("controller without cluster support: %d, want 501", code)
	}
}
