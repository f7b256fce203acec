package clustered

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verge-edge/verge/cluster"
)

// Options configure a Service. Zero fields take their defaults.
type Options struct {
	// Dir keeps the databases of the objects this node owns (rebuilt from the log when an
	// object is taken over). Required.
	Dir string
	// Lease configures the object leases.
	Lease LeaseOptions
	// Forward configures request forwarding.
	Forward ForwardOptions
	// SnapshotEvery is how many batches an object ships between snapshots. Zero means
	// DefaultSnapshotEvery.
	SnapshotEvery int
	// Logger receives lease losses and forwarding failures. Nil means slog.Default().
	Logger *slog.Logger
}

// Service is what one node needs to run Durable Objects across a cluster: the lease
// placement, the replicated store and the forwarder, with their metrics. Give Placement
// and Store to durable.Options (worker.Services.Placement and .Durable) and Forwarder to
// worker.Services.Router.
type Service struct {
	Placement *Placement
	Store     *Store
	Forwarder *Forwarder
	Log       *Log

	m *metrics

	stop chan struct{}
	wg   sync.WaitGroup // prepare
}

// Open starts the Durable Object side of node. It needs no reachable cluster: leases,
// appends and forwards fail with cluster.ErrUnavailable until one is.
func Open(node *cluster.Node, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Lease.Logger == nil {
		o.Lease.Logger = o.Logger
	}
	if o.Forward.Logger == nil {
		o.Forward.Logger = o.Logger
	}
	p, err := NewPlacement(node, o.Lease)
	if err != nil {
		return nil, err
	}
	log := NewLog(node)
	st := NewStore(o.Dir, p, log)
	st.SnapshotEvery = o.SnapshotEvery
	f, err := NewForwarder(node, p, o.Forward)
	if err != nil {
		st.Close()
		p.Close()
		return nil, err
	}
	s := &Service{Placement: p, Store: st, Forwarder: f, Log: log, m: newMetrics(), stop: make(chan struct{})}
	st.OnReplicate = s.m.observeReplicate
	st.OnRestore = s.m.observeRestore
	s.wg.Add(1)
	go s.prepare(o.Logger)
	return s, nil
}

// prepare opens (creating it if needed) the lease bucket ahead of the first request, so that
// no request waits for JetStream to place a new stream; it tries again until it succeeds
// or the service closes.
func (s *Service) prepare(log *slog.Logger) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// bucket retries within each 30 s round (retryJS); a round that fails is logged.
	for {
		rctx, rcancel := context.WithTimeout(ctx, jsOpenTimeout)
		_, err := s.Placement.bucket(rctx)
		rcancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		log.Warn("durable: the lease bucket is not ready yet; Durable Object requests wait for it", "err", err)
	}
}

// Drain stops taking forwarded requests and waits, until ctx ends, for those running
// here; the ones still running then are cancelled. Call it before closing the namespaces,
// so that requests forwarded here finish before the objects' leases are released.
func (s *Service) Drain(ctx context.Context) { s.Forwarder.Shutdown(ctx) }

// Close releases the leases still held (after the namespaces have closed their objects)
// and stops the service.
func (s *Service) Close() error {
	close(s.stop)
	s.wg.Wait()
	s.Forwarder.Close()
	err := s.Store.Close()
	s.Placement.Close()
	return err
}

// Status is the Durable Object part of GET /cluster.
type Status struct {
	// Owned counts the objects whose lease this node holds.
	Owned int `json:"objects_owned"`
	// LeasesAcquired, LeasesReleased and LeasesLost count lease changes since start.
	LeasesAcquired uint64 `json:"leases_acquired"`
	LeasesReleased uint64 `json:"leases_released"`
	LeasesLost     uint64 `json:"leases_lost"`
	// ForwardedOut counts requests sent to the objects' owners, ForwardedIn those run here
	// for other nodes, ForwardRefused those refused because too many were running.
	ForwardedOut   uint64 `json:"forwarded_out"`
	ForwardedIn    uint64 `json:"forwarded_in"`
	ForwardRefused uint64 `json:"forward_refused"`
	// Replicated counts write batches appended to the log, ReplicationMeanMillis their
	// mean time from append to acknowledgement by a quorum.
	Replicated            uint64  `json:"batches_replicated"`
	ReplicatedBytes       uint64  `json:"bytes_replicated"`
	ReplicationMeanMillis float64 `json:"replication_mean_ms"`
	// Restores counts objects rebuilt from snapshot and log (takeovers, activations),
	// RestoreMeanMillis their mean duration.
	Restores          uint64  `json:"restores"`
	RestoredRecords   uint64  `json:"records_restored"`
	RestoreMeanMillis float64 `json:"restore_mean_ms"`
}

// Status returns the node's Durable Object counters.
func (s *Service) Status() Status {
	ls, fs := s.Placement.Stats(), s.Forwarder.Stats()
	st := Status{Owned: ls.Owned, LeasesAcquired: ls.Acquired, LeasesReleased: ls.Released, LeasesLost: ls.Lost,
		ForwardedOut: fs.Out, ForwardedIn: fs.In, ForwardRefused: fs.Refused}
	s.m.mu.Lock()
	st.Replicated, st.ReplicatedBytes, st.Restores, st.RestoredRecords = s.m.replN, s.m.replBytes, s.m.restoreN, s.m.restoreRecordsTotal
	if s.m.replN > 0 {
		st.ReplicationMeanMillis = ms(s.m.replSum / time.Duration(s.m.replN))
	}
	if s.m.restoreN > 0 {
		st.RestoreMeanMillis = ms(s.m.restoreSum / time.Duration(s.m.restoreN))
	}
	s.m.mu.Unlock()
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// metrics are the service's histograms and the totals Status reports.
type metrics struct {
	repl, restore prometheus.Histogram

	mu                  sync.Mutex
	replN, replBytes    uint64
	replSum             time.Duration
	restoreN            uint64
	restoreSum          time.Duration
	restoreRecordsTotal uint64
}

func newMetrics() *metrics {
	return &metrics{
		repl: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "verge_do_replication_seconds",
			Help:    "Time from appending a Durable Object write batch to the log to its acknowledgement by a quorum of replicas.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		restore: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "verge_do_restore_seconds",
			Help:    "Time to rebuild a Durable Object from its snapshot and log before this node serves it.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
}

func (m *metrics) observeReplicate(d time.Duration, bytes int) {
	m.repl.Observe(d.Seconds())
	m.mu.Lock()
	m.replN++
	m.replBytes += uint64(bytes)
	m.replSum += d
	m.mu.Unlock()
}

func (m *metrics) observeRestore(d time.Duration, records int) {
	m.restore.Observe(d.Seconds())
	m.mu.Lock()
	m.restoreN++
	m.restoreSum += d
	m.restoreRecordsTotal += uint64(records)
	m.mu.Unlock()
}

var (
	descOwned = prometheus.NewDesc("verge_do_objects_owned",
		"Durable Objects whose lease this node holds.", nil, nil)
	descLeaseChanges = prometheus.NewDesc("verge_do_lease_changes_total",
		"Durable Object lease changes on this node, by change (acquired, released, lost).", []string{"change"}, nil)
	descForwarded = prometheus.NewDesc("verge_do_forwarded_requests_total",
		"Durable Object requests forwarded between nodes, by direction (out: sent to the owner; in: run here for another node; refused: too many running here).", []string{"direction"}, nil)
)

// Collector returns the service's Prometheus collector.
func (s *Service) Collector() prometheus.Collector { return (*collector)(s) }

type collector Service

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOwned
	ch <- descLeaseChanges
	ch <- descForwarded
	c.m.repl.Describe(ch)
	c.m.restore.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ls, fs := c.Placement.Stats(), c.Forwarder.Stats()
	ch <- prometheus.MustNewConstMetric(descOwned, prometheus.GaugeValue, float64(ls.Owned))
	ch <- prometheus.MustNewConstMetric(descLeaseChanges, prometheus.CounterValue, float64(ls.Acquired), "acquired")
	ch <- prometheus.MustNewConstMetric(descLeaseChanges, prometheus.CounterValue, float64(ls.Released), "released")
	ch <- prometheus.MustNewConstMetric(descLeaseChanges, prometheus.CounterValue, float64(ls.Lost), "lost")
	ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(fs.Out), "out")
	ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(fs.In), "in")
	ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(fs.Refused), "refused")
	c.m.repl.Collect(ch)
	c.m.restore.Collect(ch)
}
