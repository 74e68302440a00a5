package discovery

import (
	"errors"
	"time"

	"github.com/sluice-lb/sluice/internal/reconnect"
)

// Status is the node's subscription to its control plane, as the node's
// admin address shows it (Envoy's control_plane.connected_state, and the
// rejected updates of its xDS stats): with the control plane gone, or a
// version refused, the node serves on, and this is where it says so.
type Status struct {
	// Address is the control plane the node uses now; Client.Status leaves
	// it to the caller, which knows the replicas.
	Address string
	// Connected is set while a subscription the control plane took is
	// open. Since is when that last changed: when the control plane took
	// it or when the last one ended, or the client's start before either.
	Connected bool
	Since     time.Time
	// Error is why the last subscription ended or could not begin, while
	// none is open: "" before the first try ends.
	Error string
	// Refused is the latest version the node refused, RefusedAt when it
	// first did, and RefusedError why, on its latest try; until a version
	// applies ("": none refused since).
	Refused      string
	RefusedAt    time.Time
	RefusedError string
	// Group is the node group the control plane last said the node is
	// in; Unplaced, when it said the node is in none, is why. Both are
	// "" before it says (a control plane that predates placements never
	// does). They outlast the subscription: what the node runs came from
	// that group.
	Group    string
	Unplaced string
}

// Status reads the client's subscription, from any goroutine.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// starting sets Since for a client that has not tried yet.
func (c *Client) starting() {
	c.mu.Lock()
	if c.status.Since.IsZero() {
		c.status.Since = time.Now()
	}
	c.mu.Unlock()
}

// subscribed records a subscription the control plane took.
func (c *Client) subscribed() {
	c.mu.Lock()
	c.status.Connected, c.status.Since, c.status.Error = true, time.Now(), ""
	c.mu.Unlock()
}

// ended records why a subscription ended or could not begin. One ended
// by the client itself to tell the control plane of a late apply is taken
// again at once, and leaves the status as it was.
func (c *Client) ended(err error) {
	if errors.Is(err, errAppliedLate) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Connected {
		c.status.Connected, c.status.Since = false, time.Now()
	}
	c.status.Error = describe(err)
}

// describe is err as the status shows it: a dial error without grpc's
// wrapping (dial tcp 127.0.0.1:7070: connect: connection refused).
func describe(err error) string {
	if err == nil {
		return "the stream ended"
	}
	if cause, ok := reconnect.DialFailure(err); ok {
		return cause
	}
	return err.Error()
}

// refusedVersion records that the node refused version, for err.
func (c *Client) refusedVersion(version string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Refused != version {
		c.status.Refused, c.status.RefusedAt = version, time.Now()
	}
	c.status.RefusedError = err.Error()
}

// applied clears the refusal once a version applies.
func (c *Client) applied() {
	c.mu.Lock()
	c.status.Refused, c.status.RefusedAt, c.status.RefusedError = "", time.Time{}, ""
	c.mu.Unlock()
}

// placement is where the control plane last placed the node.
type placement struct{ Group, Problem string }

// setPlacement records group, or problem when the node is in no group,
// and returns what was recorded before.
func (c *Client) setPlacement(group, problem string) placement {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := placement{c.status.Group, c.status.Unplaced}
	c.status.Group, c.status.Unplaced = group, problem
	return was
}
