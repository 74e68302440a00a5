package discovery

import (
	"bytes"
	"slices"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// Deltas.
//
// A node that accepts deltas and runs a version the server still knows is
// sent a SnapshotDelta (field 4 of the response) instead of the snapshot
// (field 3) when that is smaller. Like snapshots, deltas are built from
// bytes and shared: each published version indexes its own encoded body by
// resource (sub-slices of the body, nothing copied), keeps the indexes of
// the deltaBases versions before it, and encodes its delta from each of
// those at most once, when the first stream needs it; every other stream on
// the same base sends the same bytes. Resources compare by their
// deterministic encoding, so a diff is a map lookup and a bytes.Equal per
// resource.

// deltaBases is how many versions before the published one a delta can be
// computed from. A node further behind (it was away, or NACKed a run of
// versions) gets the whole snapshot.
const deltaBases = 8

// kind is one kind of named resource of Snapshot and its fields in
// SnapshotDelta. Every repeated message field of Snapshot must be one
// (TestDeltaKindsCoverSnapshot), named by its field 1.
type kind struct {
	name     string
	snapshot protowire.Number // the repeated field in Snapshot
	upserted protowire.Number // SnapshotDelta: added or changed resources
	removed  protowire.Number // SnapshotDelta: names of removed ones
	order    protowire.Number // SnapshotDelta: every name, when needed
}

// kinds are in the order of their fields, so encodeDelta writes fields in
// ascending order, as proto.Marshal does.
var kinds = [...]kind{
	{name: "cluster", snapshot: 1, upserted: 2, removed: 3, order: 4},
	{name: "listener", snapshot: 2, upserted: 5, removed: 6, order: 7},
}

// deltaBaseVersionField is SnapshotDelta.base_version.
const deltaBaseVersionField = 1

// resources is one version's snapshot indexed by resource. It is immutable;
// its byte slices point into the version's encoded body.
type resources struct {
	version uint64
	label   string
	kinds   [len(kinds)]resourceList
}

type resourceList struct {
	names  []string          // in snapshot order
	byName map[string][]byte // the encoded message
}

// indexResources indexes body, field 3 of a response as encodeSnapshotField
// returns it. It returns nil when resources cannot be told apart by name (a
// name defined twice) or the snapshot has a field that is no kind of
// resource: no delta leads to or from such a version.
func indexResources(version uint64, label string, body []byte) *resources {
	_, _, n := protowire.ConsumeTag(body)
	if n < 0 {
		return nil
	}
	snap, m := protowire.ConsumeBytes(body[n:])
	if m < 0 {
		return nil
	}
	r := &resources{version: version, label: label}
	for i := range r.kinds {
		r.kinds[i].byName = make(map[string][]byte)
	}
	for len(snap) > 0 {
		num, typ, n := protowire.ConsumeTag(snap)
		if n < 0 {
			return nil
		}
		snap = snap[n:]
		k := kindOf(num)
		if k < 0 || typ != protowire.BytesType {
			return nil
		}
		msg, n := protowire.ConsumeBytes(snap)
		if n < 0 {
			return nil
		}
		snap = snap[n:]
		name := resourceName(msg)
		l := &r.kinds[k]
		if _, dup := l.byName[name]; dup {
			return nil
		}
		l.byName[name] = msg
		l.names = append(l.names, name)
	}
	return r
}

func kindOf(field protowire.Number) int {
	for i, k := range kinds {
		if k.snapshot == field {
			return i
		}
	}
	return -1
}

// resourceName returns field 1 of msg, a resource's name ("" when absent).
func resourceName(msg []byte) string {
	name := ""
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return name
		}
		msg = msg[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return name
			}
			name = string(v)
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return name
		}
		msg = msg[m:]
	}
	return name
}

// encodeDelta returns field 4 of a response that brings a node from base to
// target: a SnapshotDelta, encoded as proto.Marshal would (deterministic,
// fields in ascending order).
func encodeDelta(base, target *resources) []byte {
	var d []byte
	d = protowire.AppendTag(d, deltaBaseVersionField, protowire.BytesType)
	d = protowire.AppendString(d, base.label)
	for i, k := range kinds {
		from, to := &base.kinds[i], &target.kinds[i]
		for _, name := range to.names {
			if old, ok := from.byName[name]; !ok || !bytes.Equal(old, to.byName[name]) {
				d = protowire.AppendTag(d, k.upserted, protowire.BytesType)
				d = protowire.AppendBytes(d, to.byName[name])
			}
		}
		for _, name := range from.names {
			if _, ok := to.byName[name]; !ok {
				d = protowire.AppendTag(d, k.removed, protowire.BytesType)
				d = protowire.AppendString(d, name)
			}
		}
		if !slices.Equal(inferredOrder(from, to), to.names) {
			for _, name := range to.names {
				d = protowire.AppendTag(d, k.order, protowire.BytesType)
				d = protowire.AppendString(d, name)
			}
		}
	}
	out := make([]byte, 0, protowire.SizeTag(4)+protowire.SizeBytes(len(d)))
	out = protowire.AppendTag(out, 4, protowire.BytesType)
	return protowire.AppendBytes(out, d)
}

// inferredOrder is the order a node infers without *_order: the base's
// resources that stay, in the base's order, then the new ones in the
// target's.
func inferredOrder(from, to *resourceList) []string {
	out := make([]string, 0, len(to.names))
	for _, name := range from.names {
		if _, ok := to.byName[name]; ok {
			out = append(out, name)
		}
	}
	for _, name := range to.names {
		if _, ok := from.byName[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

// deltaCache holds a published version's deltas, one per base, each
// encoded once.
type deltaCache struct {
	mu     sync.Mutex
	byBase map[uint64]*cachedDelta
}

type cachedDelta struct {
	once sync.Once
	body []byte // field 4 of the response; nil: not smaller than the snapshot
}

// payload returns what a response bringing a node that runs version
// running to p carries after its envelope, shared and never to be
// modified: field 4, a delta, when the node accepts deltas, p still knows
// running and the delta is smaller than the snapshot; field 3, the whole
// snapshot, otherwise. This is the one place that decides.
func (p *published) payload(running uint64, acceptsDeltas bool) (body []byte, delta bool) {
	if !acceptsDeltas || running == 0 || p.res == nil {
		return p.body, false
	}
	i := slices.IndexFunc(p.bases, func(r *resources) bool { return r.version == running })
	if i < 0 {
		return p.body, false
	}
	p.deltas.mu.Lock()
	d := p.deltas.byBase[running]
	if d == nil {
		d = new(cachedDelta)
		p.deltas.byBase[running] = d
	}
	p.deltas.mu.Unlock()
	d.once.Do(func() {
		if b := encodeDelta(p.bases[i], p.res); len(b) < len(p.body) {
			d.body = b
		}
	})
	if d.body == nil {
		return p.body, false
	}
	return d.body, true
}

// basesAfter returns the bases a version published after old keeps: old
// and the newest of old's own, deltaBases at most, skipping versions that
// cannot be indexed. old is nil for a group's first version.
func basesAfter(old *published) []*resources {
	if old == nil {
		return nil
	}
	if old.res == nil {
		return slices.Clone(old.bases)
	}
	bases := make([]*resources, 0, deltaBases)
	bases = append(bases, old.res)
	for _, r := range old.bases {
		if len(bases) == deltaBases {
			break
		}
		bases = append(bases, r)
	}
	return bases
}
