package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/config"
)

// clusterOptions turns the cluster section into cluster.Options; secrets are read from
// their files here.
func clusterOptions(cfg *config.Config, upgraded bool) (cluster.Options, error) {
	c := &cfg.Cluster
	o := cluster.Options{Node: c.Node, Replicas: c.Replicas, Version: versionString()}
	if e := c.Embedded; e != nil {
		tok, err := e.EmbeddedToken()
		if err != nil {
			return o, fmt.Errorf("cluster.embedded.token_file: %w", err)
		}
		if tok != "" && len(tok) < config.MinClusterTokenBytes {
			return o, fmt.Errorf("cluster.embedded.token_file: the token is %d bytes; at least %d are required", len(tok), config.MinClusterTokenBytes)
		}
		emb := &cluster.Embedded{Listen: e.Listen, ClusterListen: e.ClusterListen, StoreDir: e.StoreDir,
			Name: e.Name, Token: tok, RetryStart: upgraded, SyncAlways: e.SyncAlways}
		for _, r := range e.Routes {
			u, err := config.RouteURL(r)
			if err != nil {
				return o, err
			}
			emb.Routes = append(emb.Routes, u)
		}
		o.Embedded = emb
		return o, nil
	}
	n := c.NATS
	o.URLs = n.URLs
	tok, err := n.NATSToken()
	if err != nil {
		return o, fmt.Errorf("cluster.nats.token_file: %w", err)
	}
	o.Token, o.User, o.Password, o.Credentials = tok, n.User, n.Password, n.Credentials
	if t := n.TLS; t != nil {
		tc := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
		if t.CA != "" {
			pem, err := os.ReadFile(t.CA)
			if err != nil {
				return o, fmt.Errorf("cluster.nats.tls.ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("cluster.nats.tls.ca: %s holds no PEM certificate", t.CA)
			}
		}
		if t.Cert != "" {
			cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
			if err != nil {
				return o, fmt.Errorf("cluster.nats.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		o.TLS = tc
	}
	return o, nil
}

// startCluster joins the cluster when the config has one; nil when it has none.
func (s *serverProc) startCluster(cfg *config.Config) (*cluster.Node, error) {
	if !cfg.Cluster.Enabled() {
		return nil, nil
	}
	o, err := clusterOptions(cfg, s.upg != nil && s.upg.HasParent())
	if err != nil {
		return nil, err
	}
	o.Logger = s.log
	o.Admin = func() string {
		if a := s.admPublic.Load(); a != nil {
			return *a
		}
		return ""
	}
	n, err := cluster.Start(context.Background(), o)
	if err != nil {
		return nil, err
	}
	if err := s.metrics.Register(n.Collector()); err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster metrics: %w", err)
	}
	s.log.Info("cluster: joined", "node", n.Name(), "replicas", n.Replicas(), "embedded", cfg.Cluster.Embedded != nil)
	return n, nil
}
