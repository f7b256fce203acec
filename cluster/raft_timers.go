package cluster

import (
	"time"
	_ "unsafe" // go:linkname
)

// The embedded server's Raft timers. nats-server's defaults (a heartbeat a second, a
// follower calls an election after 4 to 9 s without one) make a stream whose leader died
// refuse writes for up to 9 s; Verge promises that writes resume within 5 s of losing any
// one node. nats-server offers no option for these timers, so the embedded server's are set
// here, once, before any server starts; they apply to every Raft group of this process
// (the meta group, each stream and consumer). A heartbeat every 500 ms and an election after
// 1.5 to 2.5 s of silence keep three missed heartbeats between a leader's death and the
// election, which a busy machine's scheduling delays do not reach. An external NATS cluster
// keeps its own servers' timers (docs/cluster.md).
//
// Should a nats-server release rename these variables, the build fails at link time rather
// than silently keeping the defaults.

//go:linkname raftHeartbeat github.com/nats-io/nats-server/v2/server.hbInterval
var raftHeartbeat time.Duration

//go:linkname raftMinElection github.com/nats-io/nats-server/v2/server.minElectionTimeout
var raftMinElection time.Duration

//go:linkname raftMaxElection github.com/nats-io/nats-server/v2/server.maxElectionTimeout
var raftMaxElection time.Duration

// Embedded Raft timers.
const (
	RaftHeartbeat   = 500 * time.Millisecond
	RaftMinElection = 1500 * time.Millisecond
	RaftMaxElection = 2500 * time.Millisecond
)

func init() {
	raftHeartbeat = RaftHeartbeat
	raftMinElection = RaftMinElection
	raftMaxElection = RaftMaxElection
}
