package admin

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/dataplane/node"
)

// The JSON of /status. Its keys are snake_case, as every JSON the control
// plane and sluicectl print, and its counters are named as /metrics names
// them (sluice_endpoint_connect_errors_total is connect_errors).
type statusJSON struct {
	Node    string `json:"node"`
	Version string `json:"version"` // "" before the first snapshot
	// State is READY, DRAINING or WAITING (no snapshot yet), as the status
	// page shows it.
	State string `json:"state"`
	// ControlPlane is the node's subscription (nil: not known here).
	ControlPlane *controlPlaneJSON `json:"control_plane,omitempty"`
	StatsDropped uint64            `json:"stats_dropped"`
	Connections  connsJSON         `json:"connections"`
	Listeners    []listenerJSON    `json:"listeners"`
	Endpoints    []endpointJSON    `json:"endpoints"`
}

// controlPlaneJSON is the node's subscription to its control plane
// (discovery.Status).
type controlPlaneJSON struct {
	Address   string    `json:"address"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`           // when connected changed last
	Error     string    `json:"error,omitempty"` // why it is not, while not
	// Refused is the latest version the node refused, until one applies.
	Refused *refusedJSON `json:"refused,omitempty"`
	// Group is the node group the control plane puts the node in;
	// Unplaced, when it puts it in none, says why. Neither is set until
	// the control plane says.
	Group    string `json:"group,omitempty"`
	Unplaced string `json:"unplaced,omitempty"`
}

type refusedJSON struct {
	Version string    `json:"version"`
	Since   time.Time `json:"since"` // when the node first refused it
	Error   string    `json:"error"` // why, on its latest try
}

// controlPlaneStatus is cp's status as /status shows it; nil without cp.
func controlPlaneStatus(cp func() discovery.Status) *controlPlaneJSON {
	if cp == nil {
		return nil
	}
	s := cp()
	j := &controlPlaneJSON{Address: s.Address, Connected: s.Connected, Since: s.Since.UTC(), Error: s.Error, Group: s.Group, Unplaced: s.Unplaced}
	if s.Refused != "" {
		j.Refused = &refusedJSON{Version: s.Refused, Since: s.RefusedAt.UTC(), Error: s.RefusedError}
	}
	return j
}

// connsJSON is the node's client connections over all listeners.
type connsJSON struct {
	Open int    `json:"open"`
	Max  int    `json:"max"`  // sluice-dp --max-connections; 0: none
	Full uint64 `json:"full"` // times the node held max
}

type listenerJSON struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	Protocol       string `json:"protocol"`
	Connections    int    `json:"connections"`
	MaxConnections int    `json:"max_connections"` // 0: none
	Full           uint64 `json:"full"`            // times it held max_connections
	// Draining: the running snapshot removed the listener.
	Draining bool `json:"draining"`
	// DrainingConnections are those of Connections that a removed or
	// replaced listener or protocol accepted, all of them while the node
	// drains; they are closed at GraceEnds if still open. GraceEnds is
	// set while there are any, and on a removed listener.
	DrainingConnections int        `json:"draining_connections"`
	GraceEnds           *time.Time `json:"grace_ends,omitempty"`
}

type endpointJSON struct {
	Cluster           string     `json:"cluster"`
	Name              string     `json:"name"`
	Address           string     `json:"address"`
	Health            string     `json:"health"`
	Since             *time.Time `json:"since,omitempty"`
	Detail            string     `json:"detail,omitempty"`
	Weight            uint32     `json:"weight"`
	Backup            bool       `json:"backup"`
	Active            int64      `json:"active"`
	Connections       int        `json:"connections"`
	Requests          uint64     `json:"requests"`
	ReceivedBytes     uint64     `json:"received_bytes"`
	SentBytes         uint64     `json:"sent_bytes"`
	ConnectErrors     uint64     `json:"connect_errors"`
	Responses5xx      uint64     `json:"responses_5xx"`
	HealthTransitions uint64     `json:"health_transitions"`
	Ejections         uint64     `json:"ejections"`
}

// nodeState is the node's state as the page and /status name it.
func nodeState(n *node.Node) string {
	switch {
	case n.Draining():
		return "DRAINING"
	case n.Version() == "":
		return "WAITING"
	}
	return "READY"
}

// statusHandler serves /status: what the node runs and how it fares, for
// scripts.
func statusHandler(nodeID string, n *node.Node, dropped func() uint64, cp func() discovery.Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns := n.Connections()
		st := statusJSON{
			Node: nodeID, Version: n.Version(), State: nodeState(n), StatsDropped: dropped(),
			ControlPlane: controlPlaneStatus(cp),
			Connections:  connsJSON{Open: conns.Open, Max: conns.Max, Full: conns.Full},
			Listeners:    []listenerJSON{},
			Endpoints:    []endpointJSON{},
		}
		for _, l := range n.Listeners() {
			lj := listenerJSON{
				Name: l.Name, Address: l.Address, Protocol: l.Protocol,
				Connections: l.Conns, MaxConnections: l.MaxConns, Full: l.Full,
				Draining: l.Draining, DrainingConnections: l.DrainingConns,
			}
			if !l.GraceEnds.IsZero() {
				ends := l.GraceEnds.UTC()
				lj.GraceEnds = &ends
			}
			st.Listeners = append(st.Listeners, lj)
		}
		for _, e := range n.Endpoints() {
			ej := endpointJSON{
				Cluster: e.Cluster, Name: e.Name, Address: e.Address, Health: e.Health, Detail: e.Detail,
				Weight: e.Weight, Backup: e.Backup, Active: e.Inflight, Connections: e.Conns,
				Requests: e.Stats.Requests, ReceivedBytes: e.Stats.BytesIn, SentBytes: e.Stats.BytesOut,
				ConnectErrors: e.Stats.ConnectErrors, Responses5xx: e.Stats.Responses5xx,
				HealthTransitions: e.Stats.HealthTransitions, Ejections: e.Ejections,
			}
			if !e.Since.IsZero() {
				since := e.Since.UTC()
				ej.Since = &since
			}
			st.Endpoints = append(st.Endpoints, ej)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
}
