package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// cmdCluster runs `verge cluster status`.
func cmdCluster(args []string, stdout, stderr io.Writer) error {
	const synopsis = "cluster status [-c FILE | --admin URL [--token T]] [--json]"
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintf(stderr, "Usage: verge %s\n", synopsis)
		return errUsage
	}
	fs := newFlags("cluster status", synopsis, stderr)
	asJSON := fs.Bool("json", false, "print the admin API's answer (GET /cluster) as JSON")
	client := adminFlags(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ac, err := client()
	if err != nil {
		return err
	}
	status, body, err := ac.call(http.MethodGet, "/cluster", nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return adminError(status, body)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st clusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("admin api: GET /cluster: %w", err)
	}
	printClusterStatus(stdout, &st)
	return nil
}

// printClusterStatus prints GET /cluster for people: this node, the members, the JetStream
// meta group and the streams with their replication lag.
func printClusterStatus(w io.Writer, st *clusterStatus) {
	conn := "disconnected"
	if st.Connected {
		conn = "connected to " + st.Server
	}
	leader := st.MetaLeader
	if leader == "" {
		leader = "(unknown)"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node:\t%s\n", st.Node)
	fmt.Fprintf(tw, "mode:\t%s, %s\n", st.Mode, conn)
	fmt.Fprintf(tw, "role:\t%s\n", st.Role)
	fmt.Fprintf(tw, "meta leader:\t%s\n", leader)
	fmt.Fprintf(tw, "replicas:\t%d\n", st.Replicas)
	if st.Error != "" {
		fmt.Fprintf(tw, "error:\t%s\n", st.Error)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nmembers (%d answered):\n", len(st.Members))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNATS SERVER\tADMIN\tVERSION\tUP")
	for _, m := range st.Members {
		name := m.Node
		if m.Node == st.Node {
			name += " (this node)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, dash(m.NATSServer), dash(m.Admin), dash(m.Version), since(m.Started))
	}
	tw.Flush()

	if len(st.Peers) > 0 {
		fmt.Fprintln(w, "\njetstream meta group:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVER\tROLE\tCURRENT\tLAG\tLAST SEEN")
		for _, p := range st.Peers {
			role := "follower"
			if p.Name == st.MetaLeader {
				role = "leader"
			}
			cur := yesNo(p.Current)
			if p.Offline {
				cur = "offline"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Name, role, cur, p.Lag, agoMillis(p.ActiveMillis, p.Name == st.MetaLeader))
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nstreams and buckets (%d):\n", len(st.Streams))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tREPLICAS\tLEADER\tMESSAGES\tBYTES\tHEALTHY\tLAG\tBEHIND")
	for _, s := range st.Streams {
		var behind []string
		for _, f := range s.Followers {
			if !f.Current || f.Offline || f.Lag > 0 {
				behind = append(behind, fmt.Sprintf("%s(%d)", f.Name, f.Lag))
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%d\t%s\n", s.Name, s.Replicas, dash(s.Leader), s.Messages, s.Bytes,
			yesNo(s.Healthy), s.Lag, dash(strings.Join(behind, " ")))
	}
	tw.Flush()

	if d := st.Durable; d != nil {
		fmt.Fprintf(w, "\ndurable objects: %d owned here; leases acquired %d, released %d, lost %d; forwarded out %d, in %d, refused %d\n",
			d.Owned, d.LeasesAcquired, d.LeasesReleased, d.LeasesLost, d.ForwardedOut, d.ForwardedIn, d.ForwardRefused)
		fmt.Fprintf(w, "  replicated %d batches (%d bytes, mean %.2f ms to a quorum); restored %d objects (%d records, mean %.1f ms)\n",
			d.Replicated, d.ReplicatedBytes, d.ReplicationMeanMillis, d.Restores, d.RestoredRecords, d.RestoreMeanMillis)
	}
	if p := st.Purges; p != nil {
		fmt.Fprintf(w, "\ncache purges: last applied sequence %d; sent %d, received %d, applied %d, failed %d (publish) %d (apply), whole-cache resyncs %d\n",
			p.AppliedSequence, p.Sent, p.Received, p.Applied, p.PublishFailures, p.ApplyFailures, p.Resyncs)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

func agoMillis(ms float64, self bool) string {
	if self {
		return "-"
	}
	return (time.Duration(ms * float64(time.Millisecond))).Round(time.Millisecond).String() + " ago"
}
