package node

import (
	"maps"
	"slices"
	"strings"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/rules"
)

// ClusterMeter is a cluster's meter and what the node reads of its state
// when asked rather than on every request.
type ClusterMeter struct {
	*meter.Cluster
	// Queued counts the requests and sessions waiting for a free endpoint
	// (max_conn reached, queue on).
	Queued int
}

// ListenerMeters returns the meters of the running listeners, and of the
// removed ones whose connections still drain under a name no running
// listener has (their sessions still count there), by name.
func (n *Node) ListenerMeters() []*meter.Listener {
	n.mu.Lock()
	out := make([]*meter.Listener, 0, len(n.meters)+len(n.removed))
	for _, m := range n.meters {
		out = append(out, m)
	}
	var draining map[string]bool
	for g := range n.removed {
		if g.meter == nil || n.meters[g.name] != nil || draining[g.name] {
			continue // of a running listener, or listed already
		}
		if draining == nil {
			draining = map[string]bool{}
		}
		draining[g.name] = true
		out = append(out, g.meter)
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b *meter.Listener) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// drainingMeter is the meter of a removed listener called name whose
// connections still drain, or nil: a listener added back under its name
// counts on with it, so that its connections gauge counts both and its
// counters do not start again from zero. n.mu is held.
func (n *Node) drainingMeter(name string) *meter.Listener {
	for g := range n.removed {
		if g.name == name && g.meter != nil {
			return g.meter
		}
	}
	return nil
}

// ClusterMeters returns the meters of the running clusters, by name.
func (n *Node) ClusterMeters() []ClusterMeter {
	n.mu.Lock()
	out := make([]ClusterMeter, 0, len(n.clusters))
	for _, c := range n.clusters {
		cm := ClusterMeter{Cluster: c.meter}
		if c.queue != nil {
			cm.Queued = c.queue.len()
		}
		out = append(out, cm)
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b ClusterMeter) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// ListenerRateLimit is a listener's rule with a rate_limit, and what it
// counted.
type ListenerRateLimit struct {
	Listener string
	rules.RateLimit
}

// RateLimits lists the rules with a rate_limit of the running listeners,
// by listener name and then in rule order, each with its top clients by
// rate (rules.Set.RateLimits).
func (n *Node) RateLimits(top int) []ListenerRateLimit {
	n.mu.Lock()
	sets := make(map[string]*rules.Set, len(n.ruleSets))
	maps.Copy(sets, n.ruleSets)
	n.mu.Unlock()
	var out []ListenerRateLimit
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		for _, r := range sets[name].RateLimits(top) {
			out = append(out, ListenerRateLimit{Listener: name, RateLimit: r})
		}
	}
	return out
}
