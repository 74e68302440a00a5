// Package scale builds what the apply-at-scale measurements need (DESIGN.md
// "How we measure": apply 10k clusters / 100k endpoints on a node in under
// 200 ms, with zero failed requests during it): big snapshots and their
// successors, loopback backends, and steady HTTP and TCP traffic that counts
// every failed request.
//
// The unit-size test and the benchmarks of package node and the
// `make bench-scale` program (bench/scale) share it, so that the figure the
// program prints and the profile a benchmark takes are of the same thing.
package scale

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Spec says what snapshot Build makes.
type Spec struct {
	// Clusters and Endpoints (per cluster): 10,000 × 10 is the target.
	Clusters, Endpoints int
	// Backends are the addresses the endpoints point at, in turn. Many
	// endpoints share one: the measurement needs 100k endpoints, not 100k
	// servers, and every endpoint can still be dialed and checked.
	Backends []string
	// CheckEvery: every CheckEvery-th cluster has a TCP health check every
	// CheckInterval (default 5s); 0: none. A user with 100k endpoints
	// checks some of them; HAProxy spreads the first checks of a server
	// farm over the interval.
	CheckEvery    int
	CheckInterval time.Duration
	// HashEvery: every HashEvery-th cluster balances by a Maglev hash of
	// the source address, the most expensive picker to build; LeastEvery:
	// every LeastEvery-th by LEAST_CONN. The rest is ROUND_ROBIN. 0: none.
	HashEvery, LeastEvery int
	// HTTPAddr and TCPAddr are the two listeners: an HTTP one routing to
	// cluster 0 and a TCP one routing to cluster 1 (both unchecked round
	// robin, the clusters traffic measures). Empty: no such listener.
	HTTPAddr, TCPAddr string
}

// Target is the figure of DESIGN.md: 10,000 clusters of 10 endpoints, a
// tenth of the clusters health checked, one in a hundred on a Maglev hash,
// one in ten on LEAST_CONN.
func Target(backends []string, httpAddr, tcpAddr string) Spec {
	return Spec{Clusters: 10000, Endpoints: 10, Backends: backends, CheckEvery: 10, HashEvery: 100, LeastEvery: 10,
		HTTPAddr: httpAddr, TCPAddr: tcpAddr}
}

// ClusterName is the name of cluster i of a generated snapshot: names sort
// as the clusters are ordered.
func ClusterName(i int) string { return fmt.Sprintf("c%06d", i) }

// Build returns the snapshot s describes.
func Build(s Spec) *sluicev1.Snapshot {
	snap := &sluicev1.Snapshot{Clusters: make([]*sluicev1.Cluster, 0, s.Clusters)}
	for i := range s.Clusters {
		snap.Clusters = append(snap.Clusters, s.cluster(i, 0))
	}
	if s.HTTPAddr != "" {
		snap.Listeners = append(snap.Listeners, &sluicev1.Listener{Name: "http", Address: s.HTTPAddr,
			Protocol: sluicev1.Protocol_PROTOCOL_HTTP, DefaultCluster: ClusterName(0)})
	}
	if s.TCPAddr != "" {
		snap.Listeners = append(snap.Listeners, &sluicev1.Listener{Name: "tcp", Address: s.TCPAddr,
			Protocol: sluicev1.Protocol_PROTOCOL_TCP, DefaultCluster: ClusterName(1)})
	}
	return snap
}

// cluster is cluster i as generation gen of the snapshot has it: the
// generation moves weights, so that two generations differ.
func (s Spec) cluster(i, gen int) *sluicev1.Cluster {
	c := &sluicev1.Cluster{Name: ClusterName(i), LbPolicy: sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN}
	traffic := i < 2
	switch {
	case traffic:
	case s.HashEvery > 0 && i%s.HashEvery == s.HashEvery-1:
		c.LbPolicy = sluicev1.LbPolicy_LB_POLICY_HASH
		c.Hash = &sluicev1.HashPolicy{Key: sluicev1.HashKey_HASH_KEY_SOURCE_IP, Method: sluicev1.HashMethod_HASH_METHOD_MAGLEV}
	case s.LeastEvery > 0 && i%s.LeastEvery == s.LeastEvery/2:
		c.LbPolicy = sluicev1.LbPolicy_LB_POLICY_LEAST_CONN
	}
	if !traffic && s.CheckEvery > 0 && i%s.CheckEvery == 0 {
		iv := s.CheckInterval
		if iv <= 0 {
			iv = 5 * time.Second
		}
		c.HealthCheck = &sluicev1.HealthCheck{Interval: durationpb.New(iv), Timeout: durationpb.New(min(iv, time.Second))}
	}
	c.Endpoints = make([]*sluicev1.Endpoint, s.Endpoints)
	for j := range c.Endpoints {
		addr := "127.0.0.1:9"
		if len(s.Backends) > 0 {
			addr = s.Backends[(i*s.Endpoints+j)%len(s.Backends)]
		}
		c.Endpoints[j] = &sluicev1.Endpoint{Name: fmt.Sprintf("e%d", j), Address: addr,
			Weight: proto.Uint32(uint32(1 + (i+j+gen)%8))}
	}
	return c
}

// Change is what Next changes of a snapshot: the normal re-apply.
type Change struct {
	// Reweigh clusters get new weights (the two traffic clusters among
	// them); Replace clusters are removed and as many new ones added.
	Reweigh, Replace int
}

// NormalChange is a typical operator's change to a big snapshot: a few
// weights moved, a few clusters gone and a few new ones.
var NormalChange = Change{Reweigh: 10, Replace: 10}

// Next returns generation gen (from 1) of the snapshot after prev, made by
// Spec s, and the delta from prev to it, as the control plane sends it.
// Like a snapshot the node rebuilds from a delta (discovery.ApplyDelta),
// the result shares every unchanged cluster with prev; neither must be
// modified afterwards.
func Next(s Spec, prev *sluicev1.Snapshot, gen int, ch Change) (*sluicev1.Snapshot, *sluicev1.SnapshotDelta) {
	d := &sluicev1.SnapshotDelta{}
	next := &sluicev1.Snapshot{Clusters: make([]*sluicev1.Cluster, 0, len(prev.GetClusters())), Listeners: prev.GetListeners()}
	n := len(prev.GetClusters())
	reweigh := map[int]bool{0: true, 1: true} // the traffic clusters always
	for k := 0; len(reweigh) < min(ch.Reweigh, n); k++ {
		reweigh[(gen*7919+k*104729)%n] = true
	}
	// Replaced: clusters past the traffic ones and unchanged otherwise;
	// each is removed and a cluster of a new name added at the end.
	replace := map[int]bool{}
	for k := 0; len(replace) < min(ch.Replace, n-len(reweigh)); k++ {
		if i := 2 + (gen*31+k*977)%(n-2); !reweigh[i] {
			replace[i] = true
		}
	}
	var added []*sluicev1.Cluster
	for i, c := range prev.GetClusters() {
		switch {
		case replace[i]:
			d.RemovedClusters = append(d.RemovedClusters, c.GetName())
			nc := s.cluster(s.Clusters+gen*len(replace)+len(added), gen)
			added = append(added, nc)
			d.Clusters = append(d.Clusters, nc)
		case reweigh[i]:
			nc := proto.CloneOf(c)
			for j, e := range nc.GetEndpoints() {
				e.Weight = proto.Uint32(uint32(1 + (i+j+gen)%8))
			}
			next.Clusters = append(next.Clusters, nc)
			d.Clusters = append(d.Clusters, nc)
		default:
			next.Clusters = append(next.Clusters, c)
		}
	}
	next.Clusters = append(next.Clusters, added...)
	return next, d
}
