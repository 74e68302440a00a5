package discovery

import (
	"errors"
	"fmt"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// errDeltaBase: a delta is based on a version the node does not hold. The
// NACK says which version the node runs, and the control plane bases the
// next delta on that one.
var errDeltaBase = errors.New("delta against a version the node does not hold")

// ApplyDelta returns the snapshot that d describes from base, following
// sluice.v1.SnapshotDelta's rules, or why d does not describe one (a
// removal of a resource base lacks, a name given twice, an order that is
// not a permutation of the result). It never modifies base or d, and never
// panics, whatever they hold. The result shares unchanged resources with
// base and changed ones with d: neither must be modified afterwards.
func ApplyDelta(base *sluicev1.Snapshot, d *sluicev1.SnapshotDelta) (*sluicev1.Snapshot, error) {
	clusters, err := mergeKind("cluster", base.GetClusters(), d.GetClusters(), d.GetRemovedClusters(), d.GetClusterOrder())
	if err != nil {
		return nil, err
	}
	listeners, err := mergeKind("listener", base.GetListeners(), d.GetListeners(), d.GetRemovedListeners(), d.GetListenerOrder())
	if err != nil {
		return nil, err
	}
	return &sluicev1.Snapshot{Clusters: clusters, Listeners: listeners}, nil
}

// named is a resource kind of Snapshot.
type named interface {
	comparable
	GetName() string
}

// mergeKind applies one kind's part of a delta to the base's list.
func mergeKind[T named](kind string, base, upserted []T, removed, order []string) ([]T, error) {
	var zero T
	at := make(map[string]int, len(base)) // name -> index in base
	for i, r := range base {
		if r == zero {
			return nil, fmt.Errorf("delta: base %s %d is nil", kind, i)
		}
		if _, dup := at[r.GetName()]; dup {
			return nil, fmt.Errorf("delta: base has %s %q twice", kind, r.GetName())
		}
		at[r.GetName()] = i
	}
	gone := make(map[string]bool, len(removed))
	for _, name := range removed {
		if _, ok := at[name]; !ok {
			return nil, fmt.Errorf("delta: removes %s %q, which the base does not have", kind, name)
		}
		if gone[name] {
			return nil, fmt.Errorf("delta: removes %s %q twice", kind, name)
		}
		gone[name] = true
	}
	replaced := make(map[string]T, len(upserted))
	var added []T
	for _, r := range upserted {
		if r == zero {
			return nil, fmt.Errorf("delta: a %s is nil", kind)
		}
		name := r.GetName()
		if _, dup := replaced[name]; dup {
			return nil, fmt.Errorf("delta: sends %s %q twice", kind, name)
		}
		if gone[name] {
			return nil, fmt.Errorf("delta: both removes and sends %s %q", kind, name)
		}
		replaced[name] = r
		if _, ok := at[name]; !ok {
			added = append(added, r)
		}
	}

	out := make([]T, 0, len(base)-len(removed)+len(added))
	for _, r := range base {
		name := r.GetName()
		if gone[name] {
			continue
		}
		if n, ok := replaced[name]; ok {
			r = n
		}
		out = append(out, r)
	}
	out = append(out, added...)
	if len(order) == 0 {
		return out, nil
	}

	if len(order) != len(out) {
		return nil, fmt.Errorf("delta: %s order names %d, the snapshot has %d", kind, len(order), len(out))
	}
	pos := make(map[string]int, len(out))
	for i, r := range out {
		pos[r.GetName()] = i
	}
	ordered := make([]T, len(out))
	placed := make([]bool, len(out))
	for i, name := range order {
		j, ok := pos[name]
		if !ok {
			return nil, fmt.Errorf("delta: %s order names %q, which the snapshot does not have", kind, name)
		}
		if placed[j] {
			return nil, fmt.Errorf("delta: %s order names %q twice", kind, name)
		}
		placed[j] = true
		ordered[i] = out[j]
	}
	return ordered, nil
}
