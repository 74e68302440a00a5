// Package lb holds the dataplane's load-balancing algorithms.
//
// A Picker is built from an immutable Set of endpoints each time a snapshot
// is applied or an endpoint's health changes, off the request path. Pick runs
// on the request path for every HTTP request and every TCP session: it must
// not block and does not allocate.
package lb

import (
	"errors"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// ErrNoEndpoint is returned by Pick when no endpoint can take work.
var ErrNoEndpoint = errors.New("lb: no endpoint available")

// Picker chooses an endpoint for one unit of work (an HTTP request or a TCP
// session). Implementations are safe for concurrent use.
type Picker interface {
	Pick() (*upstream.Endpoint, error)
}

// Member is one endpoint of a Set with its balancing attributes.
type Member struct {
	Endpoint *upstream.Endpoint
	// Weight is 0..256; 0 takes the endpoint out of rotation.
	Weight uint32
	// Backup endpoints are used only when no primary is available.
	Backup bool
	// Down is true when health checks mark the endpoint down.
	Down bool
}

// Set is the input of a Picker: the endpoints of one cluster in snapshot
// order. A Set is never mutated after a Picker is built from it.
type Set []Member

// Eligible returns the members that may take work: the primaries with a
// weight that are not down; or, when there is none, the first backup that
// is not down (HAProxy's default without "option allbackups").
//
// An endpoint whose health is not yet known counts as up, so a node that
// just started keeps sending to its primaries, not to a backup, until checks
// say otherwise (DESIGN problem 4).
func (s Set) Eligible() Set {
	var out Set
	for _, m := range s {
		if !m.Backup && !m.Down && m.Weight > 0 {
			out = append(out, m)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, m := range s {
		if m.Backup && !m.Down {
			if m.Weight == 0 {
				// A backup's weight only matters among backups; with
				// one backup in use it takes everything.
				m.Weight = 1
			}
			return Set{m}
		}
	}
	return nil
}

// None is a Picker for a cluster with no eligible endpoint.
type None struct{}

// Pick always fails with ErrNoEndpoint.
func (None) Pick() (*upstream.Endpoint, error) { return nil, ErrNoEndpoint }

var _ Picker = None{}
