package snapshot

import (
	"crypto/sha256"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Fingerprint is a digest of what s tells nodes, so that a stored
// snapshot equal to a new one can be found without reading and diffing
// each: snapshots between which Diff finds no change share it in the usual
// cases, the same resources in another order, or defaults written out in
// one and left out in the other. It is a hint, not a proof, either way: a
// match is worth confirming with Diff, and two snapshots whose values mean
// the same in ways Diff alone knows (a list compared whole with a default
// written out inside it) differ.
//
// It is the SHA-256 of the snapshot's deterministic encoding with its
// resources in the order of their names and, in each, the fields that
// hold what they mean when unset cleared. The control plane stores it
// with each version: should a later release clear other fields, the
// fingerprints stored before would differ from the new ones of the same
// snapshots, which only hides matches that Diff would have confirmed.
func Fingerprint(s *sluicev1.Snapshot) [sha256.Size]byte {
	h := sha256.New()
	m := s.ProtoReflect()
	fields := m.Descriptor().Fields()
	var buf []byte
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		key := keyField(fd)
		if key == nil || !m.Has(fd) {
			continue
		}
		// Diff matches resources by name, whatever their order.
		l := m.Get(fd).List()
		all := make([]protoreflect.Message, l.Len())
		for j := range all {
			all[j] = l.Get(j).Message()
		}
		slices.SortStableFunc(all, func(a, b protoreflect.Message) int {
			return strings.Compare(a.Get(key).String(), b.Get(key).String())
		})
		for _, r := range all {
			if canonical(r, false) {
				r = proto.Clone(r.Interface()).ProtoReflect()
				canonical(r, true)
			}
			// The resource as the field of a Snapshot encodes it.
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Interface())
			if err != nil {
				b = []byte(err.Error()) // not one that can be stored or sent
			}
			buf = protowire.AppendTag(buf[:0], fd.Number(), protowire.BytesType)
			buf = protowire.AppendVarint(buf, uint64(len(b)))
			h.Write(buf)
			h.Write(b)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// canonical reports whether m has fields that hold what they mean when
// unset, as diffMessage compares them, and with clear, clears them: a
// field Diff finds no change in is then unset on both sides. Lists and
// maps that Diff compares whole are left as they are.
func canonical(m protoreflect.Message, clear bool) (found bool) {
	var unset []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		meansUnset := false
		switch {
		case fd.IsList() && keyField(fd) != nil && allNamed(v.List(), keyField(fd)):
			for j := 0; j < v.List().Len(); j++ {
				found = canonical(v.List().Get(j).Message(), clear) || found
			}
		case fd.IsList(), fd.IsMap():
		case fd.Message() != nil && !scalarMessage(fd.Message()):
			found = canonical(v.Message(), clear) || found
			meansUnset = optionBlocks[fd.FullName()] && isEmpty(v.Message()) // absent is as empty
		default:
			meansUnset = hasDefault()[fd] && sameMeaning(fd, displayValue(m, fd, v, true), displayValue(m, fd, fd.Default(), false))
		}
		if meansUnset {
			found = true
			unset = append(unset, fd)
		}
		return clear || !found
	})
	if clear {
		for _, fd := range unset {
			m.Clear(fd)
		}
	}
	return found
}

// hasDefault are the fields of the snapshot's messages whose values may
// display as what they mean unset (see displayValue): those with a default
// of their own. Any other set value displays as itself, and unset as
// "unset", "", 0 or false, which no set value does.
var hasDefault = sync.OnceValue(func() map[protoreflect.FieldDescriptor]bool {
	out := map[protoreflect.FieldDescriptor]bool{}
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := 0; i < ms.Len(); i++ {
			fields := ms.Get(i).Fields()
			for j := 0; j < fields.Len(); j++ {
				fd := fields.Get(j)
				n := fd.FullName()
				_, p := presenceDefaults[n]
				_, d := derivedDefaults[n]
				_, z := zeroMeans[n]
				e := false
				if fd.Kind() == protoreflect.EnumKind {
					_, e = enumDefaults[fd.Enum().FullName()]
				}
				if p || d || z || e {
					out[fd] = true
				}
			}
			walk(ms.Get(i).Messages())
		}
	}
	walk(sluicev1.File_sluice_v1_snapshot_proto.Messages())
	return out
})

// isEmpty reports whether m has no field set.
func isEmpty(m protoreflect.Message) bool {
	empty := true
	m.Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool {
		empty = false
		return false
	})
	return empty
}
