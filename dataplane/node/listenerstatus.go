package node

import (
	"sort"
	"strings"
)

// ListenerStatus is one listener of the running configuration, as the
// node's status page shows it.
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
	// kernel's accept queue.
	MaxConns int
	Full     uint64
}

// Listeners lists the listeners of the running configuration, by name.
func (n *Node) Listeners() []ListenerStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ListenerStatus, 0, len(n.listeners))
	for _, l := range n.listeners {
		s := ListenerStatus{Name: l.name, Address: l.address}
		s.MaxConns, s.Full = l.gate.limits()
		if g := l.gen.Load(); g != nil {
			s.Protocol = strings.TrimPrefix(g.protocol.String(), "PROTOCOL_")
			s.Conns = g.conns.Len()
		}
		for g := range n.removed {
			if g.address == l.address {
				s.Conns += g.conns.Len()
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
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
