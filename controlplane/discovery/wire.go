package discovery

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Fan-out without re-marshalling.
//
// A DiscoveryResponse is {1: version_info, 2: nonce, 3: snapshot}. Only the
// first two fields differ between streams, and they are a few bytes; the
// snapshot can be megabytes. So each published version encodes field 3 once
// (tag, length and the deterministic snapshot bytes) into an immutable slice
// that every stream shares, and a send encodes just the envelope in front of
// it. The two slices go to gRPC as one mem.BufferSlice, which the transport
// writes without copying them into a new message. The result is an ordinary
// DiscoveryResponse on the wire, with its fields in canonical order, so
// generated clients, grpcurl and reflection see the typed API.
//
// gRPC hands a message to the server's codec, so the server must be built
// with ServerOption: its codec passes a wireResponse through as is and gives
// every other message to the standard proto codec.

// wireResponse is a DiscoveryResponse already in wire form.
type wireResponse struct {
	head []byte // fields 1 and 2, owned by one send
	body []byte // field 3, shared by every stream and never modified
}

// encodeSnapshotField returns field 3 of a DiscoveryResponse holding snap.
func encodeSnapshotField(snap *sluicev1.Snapshot) ([]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	size := opts.Size(snap)
	b := make([]byte, 0, protowire.SizeTag(3)+protowire.SizeBytes(size))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	return opts.MarshalAppend(b, snap)
}

// encodeEnvelope returns fields 1 and 2 of a DiscoveryResponse.
func encodeEnvelope(version, nonce string) []byte {
	b := make([]byte, 0, 2+len(version)+2+len(nonce)+2)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, version)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, nonce)
	return b
}

// codec is the server codec installed by ServerOption.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*wireResponse); ok {
		// SliceBuffer's Ref and Free do nothing, so gRPC never returns the
		// shared body to a pool.
		return mem.BufferSlice{mem.SliceBuffer(r.head), mem.SliceBuffer(r.body)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return protoenc.Name }

// ServerOption installs the codec that lets the discovery server send shared,
// pre-encoded snapshots. A grpc.Server that serves Server must be built with
// it; other services on the same server are unaffected (their messages go to
// the standard proto codec).
func ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{proto: encoding.GetCodecV2(protoenc.Name)})
}
