package node

import (
	"sort"
	"strings"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// ListenerStatus is one listener of the running configuration, or one a
// snapshot removed whose connections still drain, as the node's status
// page shows it.
type ListenerStatus struct {
	Name, Address string
	// Protocol is HTTP or TCP: the names of sluicev1.Protocol without
	// prefix.
	Protocol string
	// Conns counts the client connections open on the listener's address
	// now, those an earlier listener or protocol there accepted and that
	// still drain included.
	Conns int
	// MaxConns is its max_connections (0: no cap), and Full how many
	// times it held that many and left new connections waiting in the
	// kernel's accept queue, counted by name: a listener added back
	// under the name of one removed counts on from it.
	MaxConns int
	Full     uint64
	// DrainingConns counts those of Conns that drain: accepted by a
	// listener or protocol the running snapshot removed or replaced, or,
	// once the node drains (Drain), all of them. They end when idle or
	// after their current exchange (TCP sessions when they end), and
	// those left at GraceEnds are closed: sluice-dp --drain-grace after
	// that apply (the latest, of several) or after the node's drain
	// began, whichever is sooner.
	DrainingConns int
	GraceEnds     time.Time
	// Draining is set for a listener the running snapshot no longer
	// names: its socket is closed, all its connections drain, and
	// MaxConns is 0.
	Draining bool
}

// Listeners lists the listeners of the running configuration and those
// removed whose connections still drain, by name, a running one before a
// removed one of the same name.
func (n *Node) Listeners() []ListenerStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ListenerStatus, 0, len(n.listeners)+len(n.removed))
	at := make(map[string]int, len(n.listeners)) // index in out by address
	for _, l := range n.listeners {
		s := ListenerStatus{Name: l.name, Address: l.address}
		s.MaxConns, s.Full = l.gate.limits()
		if g := l.gen.Load(); g != nil {
			s.Protocol = protocolName(g.protocol)
			s.Conns = g.conns.Len()
		}
		if n.draining.Load() && s.Conns > 0 {
			s.DrainingConns, s.GraceEnds = s.Conns, n.drainEnds
		}
		at[l.address] = len(out)
		out = append(out, s)
	}
	// A generation that drains at a running listener's address is of a
	// protocol the listener served before, or of a listener removed and
	// added back there; more than one at a removed listener's, of one
	// removed, added back and removed again.
	for g := range n.removed {
		i, ok := at[g.address]
		if !ok {
			at[g.address] = len(out)
			i = len(out)
			out = append(out, ListenerStatus{
				Name: g.name, Address: g.address, Protocol: protocolName(g.protocol), Draining: true,
				Full: g.meter.FullCount().Load(),
			})
		}
		s := &out[i]
		open := g.conns.Len()
		s.Conns += open
		s.DrainingConns += open
		if (open > 0 || s.Draining) && g.graceEnds.After(s.GraceEnds) {
			s.GraceEnds = g.graceEnds
		}
	}
	if !n.drainEnds.IsZero() {
		// The node's drain closes what is left at its end, a removed
		// listener's connections whose own grace ends later too.
		for i := range out {
			if out[i].GraceEnds.After(n.drainEnds) {
				out[i].GraceEnds = n.drainEnds
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return !out[i].Draining && out[j].Draining
	})
	return out
}

// protocolName is p as ListenerStatus.Protocol names it.
func protocolName(p sluicev1.Protocol) string {
	return strings.TrimPrefix(p.String(), "PROTOCOL_")
}

// ConnsStatus is the node's client connections over all its listeners.
type ConnsStatus struct {
	// Open counts the client connections open now, those that still drain
	// after their listener was removed or changed protocol included.
	Open int
	// Max is the node's cap (Options.MaxConnections; 0: none), and Full how
	// many times an accept loop found it reached and left new connections
	// waiting in the kernel's accept queue.
	Max  int
	Full uint64
}

// Connections reads the node's client connections and its cap.
func (n *Node) Connections() ConnsStatus {
	var s ConnsStatus
	if n.gate != nil {
		s.Max, s.Full = n.gate.limits()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.listeners {
		if g := l.gen.Load(); g != nil {
			s.Open += g.conns.Len()
		}
	}
	for g := range n.removed {
		s.Open += g.conns.Len()
	}
	return s
}
