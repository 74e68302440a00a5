package node

import (
	"slices"
	"strings"

	"github.com/sluice-lb/sluice/dataplane/meter"
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
			// One meter a name: a listener removed, added back and
			// removed again while it drains has two.
			continue
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
