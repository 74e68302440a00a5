package node

import (
	"errors"
	"fmt"
)

// ShutdownSessions closes every connection to endpoint of cluster now
// (HAProxy's "shutdown sessions server"): TCP sessions, pooled HTTP
// connections and those with a request in flight, which gets a 502. The
// endpoint stays as the running configuration has it and takes new work as
// before. It returns how many connections it closed, or an error naming
// what the running configuration lacks: the node may run an older snapshot
// than the control plane's.
func (n *Node) ShutdownSessions(cluster, endpoint string) (int, error) {
	cur := n.current.Load()
	if cur == nil {
		return 0, errors.New("node: no configuration applied yet")
	}
	c, ok := (*cur)[cluster]
	if !ok {
		return 0, fmt.Errorf("node: no cluster %q in the running configuration (version %s)", cluster, n.Version())
	}
	ep := c.endpoint(endpoint)
	if ep == nil {
		return 0, fmt.Errorf("node: cluster %q has no endpoint %q in the running configuration (version %s)", cluster, endpoint, n.Version())
	}
	closed := ep.ShutdownSessions()
	n.log.Info("sessions shut down", "cluster", cluster, "endpoint", endpoint, "closed", closed)
	return closed, nil
}
