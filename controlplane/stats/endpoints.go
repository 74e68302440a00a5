package stats

import (
	"cmp"
	"slices"
	"sync"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Views keeps the latest view of its endpoints each node reported (health,
// weight, connections, counters), for sluicectl stats. A view replaces the
// node's previous one whole; views are never modified once stored, so
// readers share them without copying.
type Views struct {
	now func() time.Time

	mu    sync.Mutex
	nodes map[string]*View
}

// View is one node's latest report of its endpoints, sorted by cluster
// then endpoint, as the node sends them. Treat it as read-only.
type View struct {
	NodeID string
	// ReportedAt is when the control plane received it.
	ReportedAt time.Time
	// Version is the configuration version the node ran when it read the
	// counters (EndpointReport.version; "" from older nodes).
	Version   string
	Endpoints []*sluicev1.EndpointStats
}

// NewViews returns an empty set of views.
func NewViews() *Views { return &Views{now: time.Now, nodes: map[string]*View{}} }

// Put makes rep node's view, received now, and returns it. rep must not
// be modified afterwards.
func (v *Views) Put(node string, rep *sluicev1.EndpointReport) *View {
	view := &View{NodeID: node, ReportedAt: v.now(), Version: rep.GetVersion(), Endpoints: rep.GetEndpoints()}
	v.mu.Lock()
	v.nodes[node] = view
	v.mu.Unlock()
	return view
}

// Drop forgets the views of nodes reported before before: a node that
// came back and reported since keeps its new one.
func (v *Views) Drop(before time.Time, nodes ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range nodes {
		if view, ok := v.nodes[n]; ok && view.ReportedAt.Before(before) {
			delete(v.nodes, n)
		}
	}
}

// List returns the views of node (every node for ""), sorted by node id,
// with only the endpoints of cluster (all for ""); a node with no endpoint
// of cluster is left out.
func (v *Views) List(node, cluster string) []*View {
	v.mu.Lock()
	var out []*View
	if node != "" {
		if view, ok := v.nodes[node]; ok {
			out = append(out, view)
		}
	} else {
		out = make([]*View, 0, len(v.nodes))
		for _, view := range v.nodes {
			out = append(out, view)
		}
	}
	v.mu.Unlock()
	slices.SortFunc(out, func(a, b *View) int { return cmp.Compare(a.NodeID, b.NodeID) })
	if cluster == "" {
		return out
	}
	kept := out[:0]
	for _, view := range out {
		var eps []*sluicev1.EndpointStats
		for _, ep := range view.Endpoints {
			if ep.GetCluster() == cluster {
				eps = append(eps, ep)
			}
		}
		if len(eps) > 0 {
			kept = append(kept, &View{NodeID: view.NodeID, ReportedAt: view.ReportedAt, Version: view.Version, Endpoints: eps})
		}
	}
	return kept
}
