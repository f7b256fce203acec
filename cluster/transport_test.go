package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/clustertest"
)

// TestEmbeddedServerRequiresToken attacks an embedded server with a token from outside: a
// NATS client without the token or with a wrong one is refused (so it can neither publish a
// cache purge nor read a bucket), and so is a route connection (another "server") without
// the token; the right token works.
func TestEmbeddedServerRequiresToken(t *testing.T) {
	ports := clustertest.FreePorts(t, 2)
	const token = "s3cret-token-0123456789"
	client, route := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	n, err := cluster.Start(context.Background(), cluster.Options{Node: "solo", Embedded: &cluster.Embedded{
		Listen: client, ClusterListen: route, StoreDir: t.TempDir(), Name: "verge-test", Token: token,
		Routes: []*url.URL{{Scheme: "nats-route", Host: route}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, opts := range [][]nats.Option{
		nil,
		{nats.Token("wrong-token-0123456789")},
		{nats.UserInfo("verge", token)}, // the routes' user is not a client account
	} {
		nc, err := nats.Connect("nats://"+client, append(opts, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Publish(cluster.SubjectPrefix+"purges.log", []byte(`{"all":true}`))
			nc.Close()
			t.Fatalf("client with options %d connected to the embedded server", len(opts))
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("client refused with %v, want an authorization error", err)
		}
	}
	nc, err := nats.Connect("nats://"+client, nats.Token(token), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	nc.Close()

	// A route that does not know the token.
	c, err := net.DialTimeout("tcp", route, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("route port greeting %q %v", line, err)
	}
	fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"verge\",\"pass\":\"guess\",\"name\":\"intruder\",\"cluster\":\"verge-test\"}\r\nPING\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // closed without a PONG
		}
		if strings.HasPrefix(line, "PONG") {
			t.Fatal("route without the token was accepted")
		}
		if strings.HasPrefix(line, "-ERR") {
			if !strings.Contains(strings.ToLower(line), "authorization") {
				t.Fatalf("route refused with %q, want an authorization error", line)
			}
			break
		}
	}
}
