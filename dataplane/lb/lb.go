// Package lb holds the dataplane's load-balancing algorithms, one file per
// algorithm, each HAProxy "balance" algorithm behind the same Picker:
//
//	ROUND_ROBIN  NewRoundRobin   smooth weighted round robin
//	STATIC_RR    NewStaticRR     weighted round robin, position only
//	FIRST        NewFirst        first endpoint with a free slot
//	LEAST_CONN   NewLeastConn    fewest in-flight work per weight
//	RANDOM       NewRandom       power of d weighted random choices
//	HASH         NewHash         map-based, Maglev or ring, bounded load
//
// A Picker is built from an immutable Set of endpoints each time a snapshot
// is applied or an endpoint's health changes, off the request path. Pick runs
// on the request path for every HTTP request and every TCP session: it must
// not block and does not allocate. A picker's only runtime state is atomics
// (or, for ROUND_ROBIN over very large weight sums, one short lock); it is
// replaced, never mutated, when the set changes.
//
// Every picker honours Member.MaxConn the same way: an endpoint whose
// Inflight has reached its MaxConn is full and skipped, and Pick returns
// ErrFull when every eligible endpoint is full. The check and the caller's
// Endpoint.Acquire are not one atomic step, so under concurrency MaxConn can
// be overshot by the number of goroutines racing on the same endpoint.
package lb

import (
	"errors"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// ErrNoEndpoint is returned by Pick when no endpoint can take work.
var ErrNoEndpoint = errors.New("lb: no endpoint available")

// ErrFull is returned by Pick when every eligible endpoint has reached its
// MaxConn. The caller queues the work or answers 503.
var ErrFull = errors.New("lb: every endpoint is full")

// Request is what a picker may use about one unit of work. It is passed by
// value: a pointer passed through the Picker interface would escape and
// cost an allocation per request.
type Request struct {
	// Hash is the 64-bit hash of the cluster's hash key for this request
	// (HASH policy), normally from HashKey or HashString; HasHash is false
	// when the request has no such key (the pick then falls back to round
	// robin).
	Hash    uint64
	HasHash bool
}

// Picker chooses an endpoint for one unit of work (an HTTP request or a TCP
// session). Pick is called on the request path from many goroutines at
// once: it must not block or allocate, and must not keep r. The caller
// counts the work in with Endpoint.Acquire when it uses the endpoint.
type Picker interface {
	Pick(r Request) (*upstream.Endpoint, error)
}

// Member is one endpoint of a Set with its balancing attributes.
type Member struct {
	Endpoint *upstream.Endpoint
	// Weight is 0..256; 0 takes the endpoint out of rotation. A slow
	// start under way scales every member's weight up, and ramps its own.
	Weight uint32
	// Full is the member's Weight once every slow start under way has
	// ended (0: Weight). The hash ring sizes its members by it, so that a
	// ramp adds to one member's points and leaves the others' alone.
	Full uint32
	// MaxConn is how much work the endpoint may have in flight; 0 means
	// unlimited. A member at its MaxConn is full and skipped by every
	// picker (HAProxy's server maxconn).
	MaxConn uint32
	// Backup endpoints are used only when no primary is available.
	Backup bool
	// Down is true when health checks mark the endpoint down.
	Down bool
}

// fullWeight is m's Full, or its Weight when no slow start is under way.
func (m *Member) fullWeight() uint32 {
	if m.Full != 0 {
		return m.Full
	}
	return m.Weight
}

// full reports whether m has reached its MaxConn.
func (m *Member) full() bool {
	return m.MaxConn > 0 && m.Endpoint.Inflight() >= int64(m.MaxConn)
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
//
// The result may be s itself, when every member is eligible (the common
// case, which then costs no copy): like s, it must not be modified.
func (s Set) Eligible() Set {
	all := true
	for i := range s {
		if m := &s[i]; m.Backup || m.Down || m.Weight == 0 {
			all = false
			break
		}
	}
	if all && len(s) > 0 {
		return s
	}
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

// AllBackups applies HAProxy's "option allbackups" to s, in place: when no
// primary can take work, every backup becomes a primary, so that Eligible
// returns all of them that are up, by weight (all weights 0 counting as
// equal, as with one backup), instead of the first one.
func (s Set) AllBackups() {
	weighted := false
	for _, m := range s {
		if !m.Backup && !m.Down && m.Weight > 0 {
			return // a primary takes the work
		}
		weighted = weighted || m.Backup && m.Weight > 0
	}
	for i := range s {
		if s[i].Backup {
			s[i].Backup = false
			if !weighted {
				s[i].Weight = 1
			}
		}
	}
}

// Limited reports whether any member has a MaxConn, so pickers can skip
// the full checks entirely, and a cluster its queue, for the common
// unlimited cluster.
func (s Set) Limited() bool {
	for i := range s {
		if s[i].MaxConn > 0 {
			return true
		}
	}
	return false
}

// freeFrom returns the index of the first member at or after start, in
// snapshot order and wrapping around, that is not full; or -1.
func (s Set) freeFrom(start int) int {
	n := len(s)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if !s[i].full() {
			return i
		}
	}
	return -1
}

// lighter reports whether a carries less work per unit of weight than b:
// inflight_a/weight_a < inflight_b/weight_b, compared without division.
func lighter(inA int64, wA uint32, inB int64, wB uint32) bool {
	return inA*int64(wB) < inB*int64(wA)
}

// None is a Picker for a cluster with no eligible endpoint.
type None struct{}

// Pick always fails with ErrNoEndpoint.
func (None) Pick(Request) (*upstream.Endpoint, error) { return nil, ErrNoEndpoint }

var _ Picker = None{}
