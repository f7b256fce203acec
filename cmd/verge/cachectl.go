package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/observe"
)

var _ admin.Purger = (*serverProc)(nil)

// newCache builds the process's HTTP cache from the top-level cache section. It lives for the
// whole process: reloads change which routes cache, not the storage.
func newCache(cfg *config.Config, m *observe.Metrics) (*cache.Cache, error) {
	o := cache.Options{
		MemorySize:      int64(cfg.Cache.MemorySize),
		MemoryMaxObject: int64(cfg.Cache.MemoryMaxObject),
		Metrics:         m,
	}
	if d := cfg.Cache.Disk; d != nil {
		o.Dir, o.DiskSize = d.Path, int64(d.Size)
	}
	c, err := cache.New(o)
	if err != nil {
		return nil, err
	}
	m.SetCacheUsage(c.Usage)
	return c, nil
}

func purgeCount(n cache.Purged) admin.PurgeCount {
	return admin.PurgeCount{Objects: n.Objects, Memory: n.Memory, Disk: n.Disk}
}

// PurgeURL deletes the cached objects of an absolute URL.
func (s *serverProc) PurgeURL(url string) (admin.PurgeCount, error) {
	if s.cache == nil {
		return admin.PurgeCount{}, nil
	}
	n, err := s.cache.PurgeURL(url)
	return purgeCount(n), err
}

// PurgePrefix deletes the cached objects under an absolute URL prefix.
func (s *serverProc) PurgePrefix(prefix string) (admin.PurgeCount, error) {
	if s.cache == nil {
		return admin.PurgeCount{}, nil
	}
	n, err := s.cache.PurgePrefix(prefix)
	return purgeCount(n), err
}

// PurgeTag deletes the cached objects with a Cache-Tag or Surrogate-Key.
func (s *serverProc) PurgeTag(tag string) admin.PurgeCount {
	if s.cache == nil {
		return admin.PurgeCount{}
	}
	return purgeCount(s.cache.PurgeTag(tag))
}

// PurgeAll deletes every cached object.
func (s *serverProc) PurgeAll() admin.PurgeCount {
	if s.cache == nil {
		return admin.PurgeCount{}
	}
	return purgeCount(s.cache.PurgeAll())
}

// cmdCache runs `verge cache purge`.
func cmdCache(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "purge" {
		fmt.Fprint(stderr, "Usage: verge cache purge [--url URL]... [--prefix URL]... [--tag TAG]... [--all] [-c FILE | --admin URL [--token T]] [--json]\n")
		return errUsage
	}
	fs := newFlags("cache purge", "cache purge [--url URL]... [--prefix URL]... [--tag TAG]... [--all] [-c FILE | --admin URL [--token T]] [--json]", stderr)
	var req admin.PurgeRequest
	fs.Var((*listFlag)(&req.URLs), "url", "purge this absolute `URL` (every variant); repeatable")
	fs.Var((*listFlag)(&req.Prefixes), "prefix", "purge every URL starting with this absolute `URL`; repeatable")
	fs.Var((*listFlag)(&req.Tags), "tag", "purge the objects with this Cache-Tag / Surrogate-Key `tag`; repeatable")
	fs.BoolVar(&req.All, "all", false, "purge every cached object")
	asJSON := fs.Bool("json", false, "print the admin API's answer as JSON")
	client := adminFlags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if len(req.URLs)+len(req.Prefixes)+len(req.Tags) == 0 && !req.All {
		fmt.Fprintln(stderr, "verge cache purge: nothing to purge: give --url, --prefix, --tag or --all")
		return errUsage
	}
	ac, err := client()
	if err != nil {
		return err
	}
	status, body, err := ac.call(http.MethodPost, "/cache/purge", req)
	if err != nil {
		return err
	}
	var res admin.PurgeResult
	if status != http.StatusOK && status != http.StatusServiceUnavailable || json.Unmarshal(body, &res) != nil {
		return adminError(status, body)
	}
	if *asJSON {
		stdout.Write(body)
	} else {
		printPurge(stdout, res)
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s (retry when the cluster is reachable: purging again is harmless)", res.Error)
	}
	return nil
}

// printPurge prints a purge answer for people.
func printPurge(w io.Writer, r admin.PurgeResult) {
	where := "this node"
	if r.Node != "" {
		where = r.Node
	}
	fmt.Fprintf(w, "purged %d objects on %s (memory %d, disk %d)\n", r.Objects, where, r.Memory, r.Disk)
	if r.Members == 0 {
		return
	}
	fmt.Fprintf(w, "cluster: applied on %d of %d nodes", r.Nodes, r.Members)
	if r.Sequence != 0 {
		fmt.Fprintf(w, " (purge stream sequence %d)", r.Sequence)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPURGED\tMEMORY\tDISK\tERROR")
	for _, n := range r.PerNode {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", n.Node, n.Objects, n.Memory, n.Disk, n.Error)
	}
	tw.Flush()
	if len(r.Missing) > 0 {
		fmt.Fprintf(w, "not confirmed yet: %s (each applies the purge when it reads the purge stream, after a restart too)\n", strings.Join(r.Missing, ", "))
	}
}
