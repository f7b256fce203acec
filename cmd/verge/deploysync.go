package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cluster"
)

// Cluster deployments: a worker version deployed through the admin API of one node is stored
// in the object store deployBucket (one object per worker, named after it) and every node
// watches the store and deploys it with its own configured bindings and limits. The rule
// against config reloads (docs/cluster.md#deployments): a stored version replaces one
// configured module, the one configured on the deploying node when it was stored (its SHA-256
// is in the object's metadata); a node whose configured module is that one serves the stored
// version, any other node serves its configured module. Config changes are never pushed to
// the cluster.
const (
	// deployBucket is the object store of cluster deployments.
	deployBucket = "verge_deployments"
	// deployCheckSubject is where the deploying node asks every node whether it runs a
	// version (deployCheck); each answers once it does, or once it knows it will not.
	deployCheckSubject = cluster.SubjectPrefix + "deploy.check"
	// deployMembersWait is how long a deploy waits for the members to answer a ping.
	deployMembersWait = time.Second
	// deployStoreTimeout bounds storing or deleting a deployment.
	deployStoreTimeout = 30 * time.Second
	// deployRetryWait is the pause before the watch is tried again after an error.
	deployRetryWait = time.Second
	// maxDeployChecks bounds the check answers waiting at once; more are answered at once
	// with the state of the moment.
	maxDeployChecks = 16
)

// deployConfirmWait bounds how long a deploy through the admin API waits for the other nodes
// to report the new version running; nodes slower than that are not counted. (A variable
// for tests.)
var deployConfirmWait = 20 * time.Second

// Metadata keys of a stored deployment.
const (
	metaVersion    = "verge-version"    // the version id: the first 12 hex digits of sha256
	metaSHA256     = "verge-sha256"     // the module's SHA-256, hex
	metaNode       = "verge-node"       // the node whose admin API took the deploy
	metaDeployed   = "verge-deployed"   // when, RFC 3339
	metaConfigured = "verge-configured" // SHA-256 (hex) of the module the deploying node had configured
)

// Where a worker's running version came from, as GET /workers shows it.
const (
	sourceConfig  = "config"
	sourceCluster = "cluster"
)

// errNotConfiguredHere is a check answer's reason for a worker this node does not run.
const reasonNotConfigured = "the worker is not configured on this node"

// reasonConfigDiffers explains why a node serves its configured module, not a stored version.
const reasonConfigDiffers = "this node's configured module differs from the one the cluster version replaced"

// storedVersion is a deployment read from (or written to) the object store.
type storedVersion struct {
	nuid       string // the object store's id of this put
	id         string // version id
	sha        string // full SHA-256, hex
	node       string
	deployed   time.Time
	configured string // SHA-256 of the module configured on the deploying node, hex
	module     []byte
}

// configuredModule is the module a worker's configuration names, as last applied.
type configuredModule struct {
	module []byte
	sha    string
}

// deployOutcome records that a node could not deploy a stored version.
type deployOutcome struct {
	nuid    string
	version string // as the object's metadata names it
	err     string
}

// deploySync keeps this node's workers on the cluster's stored versions. Its goroutines are
// started by start and stopped by close.
type deploySync struct {
	node *cluster.Node
	log  *slog.Logger
	// apply deploys the module desired for worker name (see desired) with the worker's
	// configured bindings and limits, unless it runs already; the server's syncWorker.
	apply func(ctx context.Context, name string) error
	// running returns the id of the version worker name runs ("" when none).
	running func(name string) string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // (re)start the watch: the connection came up or back
	checks chan struct{} // semaphore of waiting check answers
	sub    *nats.Subscription
	// watchFailing is set while the watch cannot be established (watchLoop's own).
	watchFailing bool

	mu      sync.Mutex
	conf    map[string]configuredModule // as of the last config applied
	pending map[string]configuredModule // of the config being applied
	stored  map[string]*storedVersion
	failed  map[string]deployOutcome
	changed chan struct{} // closed and replaced on every change of the state above
	store   jetstream.ObjectStore
	closed  bool // set by close: no more check goroutines
}

func newDeploySync(node *cluster.Node, log *slog.Logger, apply func(context.Context, string) error, running func(string) string) *deploySync {
	ctx, cancel := context.WithCancel(context.Background())
	return &deploySync{
		node: node, log: log, apply: apply, running: running, ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), checks: make(chan struct{}, maxDeployChecks),
		conf: map[string]configuredModule{}, pending: map[string]configuredModule{},
		stored: map[string]*storedVersion{}, failed: map[string]deployOutcome{},
		changed: make(chan struct{}),
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// changedLocked wakes the check answers waiting for a change; d.mu is held.
func (d *deploySync) changedLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *deploySync) notify() {
	d.mu.Lock()
	d.changedLocked()
	d.mu.Unlock()
}

// WorkerModule implements router.WorkerModules: while a config is applied it returns the
// stored version of a worker whose configured module is the one that version replaced, else
// the configured module.
func (d *deploySync) WorkerModule(name string, configured []byte) []byte {
	c := configuredModule{module: configured, sha: sha256Hex(configured)}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[name] = c
	if st := d.stored[name]; st != nil && st.configured == c.sha {
		return st.module
	}
	return configured
}

// commit records the configured modules of the config just applied (ok) or forgets those
// of a refused one. The caller holds the server's mu.
func (d *deploySync) commit(ok bool) {
	d.mu.Lock()
	if ok {
		d.conf, d.pending = d.pending, map[string]configuredModule{}
	} else {
		clear(d.pending)
	}
	d.changedLocked()
	d.mu.Unlock()
}

// desired returns the module worker name should run now, nil when it is not configured.
func (d *deploySync) desired(name string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.conf[name]
	if !ok {
		return nil
	}
	if st := d.stored[name]; st != nil && st.configured == c.sha {
		return st.module
	}
	return c.module
}

// configuredSHA returns the SHA-256 of worker name's configured module.
func (d *deploySync) configuredSHA(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.conf[name]
	return c.sha, ok
}

// source says where version id of worker name came from, the stored version's id (if any)
// and, when a stored version is not what runs, why.
func (d *deploySync) source(name, id string) (src, clusterVersion, note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stored[name]
	f, failed := d.failed[name]
	if st == nil || failed && f.nuid != st.nuid {
		if failed { // a later put than st was refused
			note = "cluster version " + f.version + " not deployed: " + f.err
		}
		if st == nil {
			return sourceConfig, "", note
		}
	}
	c := d.conf[name]
	switch {
	case st.configured != c.sha:
		return sourceConfig, st.id, reasonConfigDiffers
	case st.id == id:
		return sourceCluster, st.id, note
	case failed && f.nuid == st.nuid:
		return sourceConfig, st.id, f.err
	}
	return sourceConfig, st.id, "deploying"
}

// start watches the object store (again after every reconnect) and answers deploy checks.
func (d *deploySync) start() error {
	sub, err := d.node.Conn().Subscribe(deployCheckSubject, d.answerCheck)
	if err != nil {
		return fmt.Errorf("cluster deployments: %w", err)
	}
	d.sub = sub
	d.wg.Add(1)
	go d.watchLoop()
	d.node.OnConnect(func() {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	})
	return nil
}

// close stops the watch and the check answers.
func (d *deploySync) close() {
	if d.sub != nil {
		_ = d.sub.Unsubscribe()
	}
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// bucket opens the deployments' object store, creating it when missing.
func (d *deploySync) bucket(ctx context.Context) (jetstream.ObjectStore, error) {
	d.mu.Lock()
	obs := d.store
	d.mu.Unlock()
	if obs != nil {
		return obs, nil
	}
	js := d.node.JetStream()
	obs, err := js.ObjectStore(ctx, deployBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      deployBucket,
			Description: "Verge worker deployments",
			Replicas:    d.node.Replicas(),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obs, err = js.ObjectStore(ctx, deployBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster deployments: object store %s: %w", deployBucket, err)
	}
	d.mu.Lock()
	d.store = obs
	d.mu.Unlock()
	return obs, nil
}

// watchLoop (re)establishes the watch whenever the connection comes up, and after errors.
func (d *deploySync) watchLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.kick:
		}
		for d.ctx.Err() == nil {
			err := d.watch()
			if err == nil || d.ctx.Err() != nil {
				break // a new connection: wait for its kick (pending already when it came)
			}
			// One warning per outage, not one a second.
			level := slog.LevelWarn
			if d.watchFailing {
				level = slog.LevelDebug
			}
			d.watchFailing = true
			d.log.Log(d.ctx, level, "cluster deployments: watch failed; retrying every second", "err", err)
			t := time.NewTimer(deployRetryWait)
			select {
			case <-d.ctx.Done():
				t.Stop()
				return
			case <-d.kick:
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// watch follows the object store until the connection is re-established (nil) or the watch
// fails.
func (d *deploySync) watch() error {
	if err := d.node.WaitJetStream(d.ctx); err != nil {
		return err
	}
	obs, err := d.bucket(d.ctx)
	if err != nil {
		return err
	}
	w, err := obs.Watch(d.ctx)
	if err != nil {
		return fmt.Errorf("cluster deployments: watch: %w", err)
	}
	defer stopWatch(w)
	if d.watchFailing {
		d.watchFailing = false
		d.log.Info("cluster deployments: watching the object store again")
	}
	for {
		select {
		case <-d.ctx.Done():
			return nil
		case <-d.kick:
			// Reconnected: a new watch delivers what changed meanwhile.
			select {
			case d.kick <- struct{}{}:
			default:
			}
			return nil
		case info, ok := <-w.Updates():
			if !ok {
				return errors.New("cluster deployments: the watch ended")
			}
			if info != nil {
				d.update(obs, info)
			}
		}
	}
}

// stopWatch stops w and drains what it delivered meanwhile, so that its delivery goroutine
// is not left blocked on the full channel (bounded: the channel closes once it is done).
func stopWatch(w jetstream.ObjectWatcher) {
	_ = w.Stop()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}

// update takes one change of the object store: a new version to fetch and deploy, or a
// deleted one (every node returns to its configured module).
func (d *deploySync) update(obs jetstream.ObjectStore, info *jetstream.ObjectInfo) {
	name := info.Name
	if info.Deleted {
		d.mu.Lock()
		had := d.stored[name] != nil
		delete(d.stored, name)
		delete(d.failed, name)
		d.changedLocked()
		d.mu.Unlock()
		if had {
			d.log.Info("cluster deployments: deployment dropped; serving the configured module", "worker", name)
			d.sync(name, "")
		}
		return
	}
	d.mu.Lock()
	cur := d.stored[name]
	d.mu.Unlock()
	if cur != nil && cur.nuid == info.NUID {
		return // already known (our own deploy, or a watch re-established)
	}
	st, err := d.fetchVersion(obs, name, info.NUID)
	if err != nil {
		d.log.Error("cluster deployments: stored version refused; this node keeps its version", "worker", name, "err", err)
		d.mu.Lock()
		d.failed[name] = deployOutcome{nuid: info.NUID, version: info.Metadata[metaVersion], err: err.Error()}
		d.changedLocked()
		d.mu.Unlock()
		return
	}
	d.mu.Lock()
	d.stored[name] = st
	d.changedLocked()
	d.mu.Unlock()
	d.log.Info("cluster deployments: new version stored", "worker", name, "version", st.id, "from", st.node)
	d.sync(name, st.nuid)
}

// sync deploys what worker name should run now and records a failure against the stored
// version nuid.
func (d *deploySync) sync(name, nuid string) {
	err := d.apply(d.ctx, name)
	d.mu.Lock()
	if err != nil && nuid != "" {
		v := ""
		if st := d.stored[name]; st != nil {
			v = st.id
		}
		d.failed[name] = deployOutcome{nuid: nuid, version: v, err: err.Error()}
	} else {
		delete(d.failed, name)
	}
	d.changedLocked()
	d.mu.Unlock()
	if err != nil && d.ctx.Err() == nil {
		d.log.Error("cluster deployments: cannot deploy; the previous version keeps serving", "worker", name, "err", err)
	}
}

// errStoreRead marks failures to read a stored version that a later read may not meet (a
// replica that has not caught up), as opposed to a stored version that is refused.
var errStoreRead = errors.New("reading the stored module")

// fetchVersion fetches the put nuid of worker name that the watch announced. The object's
// metadata is read from the nearest replica, which may not have it yet: an older version (or
// none) is read again, a few times within deployStoreTimeout.
func (d *deploySync) fetchVersion(obs jetstream.ObjectStore, name, nuid string) (*storedVersion, error) {
	deadline := time.Now().Add(deployStoreTimeout)
	wait := 50 * time.Millisecond
	for {
		st, err := d.fetch(obs, name)
		switch {
		case err == nil && st.nuid == nuid:
			return st, nil
		case err != nil && !errors.Is(err, errStoreRead):
			return nil, err
		case time.Now().After(deadline):
			if err == nil {
				return st, nil // another put than announced: a later one will be announced too
			}
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-d.ctx.Done():
			t.Stop()
			return nil, d.ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// fetch reads the latest stored version of worker name and checks it: its size, its metadata
// and that its SHA-256 is the one its version id and metadata name.
func (d *deploySync) fetch(obs jetstream.ObjectStore, name string) (*storedVersion, error) {
	ctx, cancel := context.WithTimeout(d.ctx, deployStoreTimeout)
	defer cancel()
	res, err := obs.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStoreRead, err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStoreRead, err)
	}
	if info.Size > admin.MaxWorkerModuleBytes {
		return nil, fmt.Errorf("stored module is %d bytes, above the %d-byte limit", info.Size, admin.MaxWorkerModuleBytes)
	}
	st, err := parseStored(info)
	if err != nil {
		return nil, err
	}
	st.module, err = io.ReadAll(io.LimitReader(res, admin.MaxWorkerModuleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStoreRead, err)
	}
	if got := sha256Hex(st.module); got != st.sha {
		return nil, fmt.Errorf("stored module's SHA-256 is %s, its metadata says %s: not deployed", got, st.sha)
	}
	return st, nil
}

// parseStored reads and checks a stored deployment's metadata.
func parseStored(info *jetstream.ObjectInfo) (*storedVersion, error) {
	m := info.Metadata
	st := &storedVersion{nuid: info.NUID, id: m[metaVersion], sha: m[metaSHA256], node: m[metaNode], configured: m[metaConfigured]}
	st.deployed, _ = time.Parse(time.RFC3339Nano, m[metaDeployed])
	if len(st.sha) != 64 || !isHex(st.sha) || len(st.configured) != 64 || !isHex(st.configured) {
		return nil, errors.New("stored deployment has no valid verge-sha256 and verge-configured metadata")
	}
	if st.id != st.sha[:12] {
		return nil, fmt.Errorf("stored deployment's version %q is not its SHA-256's first 12 digits", st.id)
	}
	return st, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// put stores module as the new cluster version of worker name (version id, over the
// configured module whose SHA-256 is configured) and records it as known, so that this
// node's watch does not fetch it again.
func (d *deploySync) put(ctx context.Context, name, id string, module []byte, configured string) (*storedVersion, error) {
	if !d.node.Connected() {
		return nil, d.unavailable(errors.New("not connected to NATS"))
	}
	ctx, cancel := context.WithTimeout(ctx, deployStoreTimeout)
	defer cancel()
	obs, err := d.bucket(ctx)
	if err != nil {
		return nil, d.unavailable(err)
	}
	st := &storedVersion{id: id, sha: sha256Hex(module), node: d.node.Name(), deployed: time.Now().UTC(), configured: configured, module: module}
	info, err := obs.Put(ctx, jetstream.ObjectMeta{
		Name:        name,
		Description: "worker " + name + " version " + id,
		Metadata: map[string]string{
			metaVersion: st.id, metaSHA256: st.sha, metaNode: st.node,
			metaDeployed: st.deployed.Format(time.RFC3339Nano), metaConfigured: configured,
		},
	}, bytes.NewReader(module))
	if err != nil {
		return nil, d.unavailable(err)
	}
	st.nuid = info.NUID
	d.mu.Lock()
	if cur := d.stored[name]; cur == nil || cur.nuid != st.nuid {
		d.stored[name] = st
	}
	delete(d.failed, name)
	d.changedLocked()
	d.mu.Unlock()
	return st, nil
}

// drop deletes the stored version of worker name. It reports false when none is stored.
func (d *deploySync) drop(ctx context.Context, name string) (bool, error) {
	if !d.node.Connected() {
		return false, d.unavailable(errors.New("not connected to NATS"))
	}
	ctx, cancel := context.WithTimeout(ctx, deployStoreTimeout)
	defer cancel()
	obs, err := d.bucket(ctx)
	if err != nil {
		return false, d.unavailable(err)
	}
	// Delete would mark a deleted object deleted again: look first.
	if _, err = obs.GetInfo(ctx, name); err == nil {
		err = obs.Delete(ctx, name)
	}
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return false, nil
	case err != nil:
		return false, d.unavailable(err)
	}
	return true, nil
}

// unavailable classifies an object store failure: the API answers 503.
func (d *deploySync) unavailable(err error) error {
	return fmt.Errorf("cluster deployments: %w: %w (%w)", cluster.ErrUnavailable, admin.ErrClusterUnavailable, err)
}

// deployCheck asks every node whether it runs Version of Worker; an empty Version asks
// whether it runs no cluster version of it (after a drop).
type deployCheck struct {
	Worker  string `json:"worker"`
	Version string `json:"version"`
	// WaitMillis bounds how long a node may wait before it answers.
	WaitMillis int64 `json:"wait_ms"`
}

// deployAnswer is one node's answer to a deployCheck.
type deployAnswer struct {
	Node    string `json:"node"`
	Running bool   `json:"running"`
	Reason  string `json:"reason,omitempty"`
}

// checkState answers c from the state of the moment: done is false while the answer may
// still change to running.
func (d *deploySync) checkState(c deployCheck) (a deployAnswer, done bool, changed <-chan struct{}) {
	a.Node = d.node.Name()
	run := d.running(c.Worker)
	d.mu.Lock()
	defer d.mu.Unlock()
	changed = d.changed
	conf, configured := d.conf[c.Worker]
	st := d.stored[c.Worker]
	if !configured {
		a.Reason = reasonNotConfigured
		return a, true, changed
	}
	if c.Version == "" { // after a drop: running the configured module
		if st == nil && run == sha256Hex(conf.module)[:12] {
			a.Running = true
			return a, true, changed
		}
		a.Reason = "still serving the cluster version"
		return a, false, changed
	}
	if run == c.Version {
		a.Running = true
		return a, true, changed
	}
	if st != nil && st.id == c.Version && st.configured != conf.sha {
		a.Reason = reasonConfigDiffers
		return a, true, changed
	}
	if f, ok := d.failed[c.Worker]; ok && f.version == c.Version {
		a.Reason = f.err
		return a, true, changed
	}
	a.Reason = "still deploying"
	return a, false, changed
}

// answerCheck answers a deployCheck once this node runs the version or knows it will not,
// or when the asker's wait is nearly over.
func (d *deploySync) answerCheck(msg *nats.Msg) {
	var c deployCheck
	if json.Unmarshal(msg.Data, &c) != nil || c.Worker == "" {
		return
	}
	reply := func(a deployAnswer) {
		b, _ := json.Marshal(a)
		_ = msg.Respond(b)
	}
	a, done, _ := d.checkState(c)
	if done {
		reply(a)
		return
	}
	select {
	case d.checks <- struct{}{}:
	default:
		reply(a) // too many waiting: answer with the state of the moment
		return
	}
	wait := min(time.Duration(c.WaitMillis)*time.Millisecond, deployConfirmWait)
	d.mu.Lock()
	if d.closed { // close is waiting for the goroutines: start no more
		d.mu.Unlock()
		<-d.checks
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go d.awaitCheck(c, wait, reply)
}

// awaitCheck waits for c to be decided and replies; it holds a slot of d.checks.
func (d *deploySync) awaitCheck(c deployCheck, wait time.Duration, reply func(deployAnswer)) {
	defer d.wg.Done()
	defer func() { <-d.checks }()
	// Answer a little before the asker stops listening.
	t := time.NewTimer(max(wait-wait/10, 0))
	defer t.Stop()
	for {
		a, done, changed := d.checkState(c)
		if done {
			reply(a)
			return
		}
		select {
		case <-changed:
		case <-t.C:
			reply(a)
			return
		case <-d.ctx.Done():
			return
		}
	}
}

// confirm asks every member whether it runs version of worker (see deployCheck) and counts
// the answers within deployConfirmWait.
func (d *deploySync) confirm(ctx context.Context, worker, version string) *admin.ClusterDeploy {
	members := d.node.Members(ctx, deployMembersWait)
	req, _ := json.Marshal(deployCheck{Worker: worker, Version: version, WaitMillis: deployConfirmWait.Milliseconds()})
	replies := d.node.Gather(ctx, deployCheckSubject, req, len(members), deployConfirmWait)
	out := &admin.ClusterDeploy{Version: version, Members: len(members)}
	seen := map[string]bool{}
	for _, r := range replies {
		var a deployAnswer
		if json.Unmarshal(r, &a) != nil || a.Node == "" || seen[a.Node] {
			continue
		}
		seen[a.Node] = true
		if a.Running {
			out.Nodes++
		} else {
			out.NotRunning = append(out.NotRunning, admin.NodeNote{Node: a.Node, Reason: a.Reason})
		}
	}
	for _, m := range members {
		if !seen[m.Node] {
			out.NotRunning = append(out.NotRunning, admin.NodeNote{Node: m.Node, Reason: "no answer within " + deployConfirmWait.String()})
		}
	}
	return out
}
