package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	dpdiscovery "github.com/sluice-lb/sluice/dataplane/discovery"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// The simulated nodes run in a helper process, so that their CPU and
// memory are not the control plane's. Each node has its own connection and
// one stream, and answers every response at once with an ACK. By default a
// node reads only the envelope of a response (version, nonce, type) and
// leaves the payload undecoded, which measures the control plane and the
// transport; with -decode it decodes everything, as a real node does (and
// a Sluice node rebuilds snapshots from deltas).

// frame is a gRPC message as bytes; rawCodec moves frames unchanged.
type frame struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*frame).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*frame).b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

var streamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

func runNodes(cfg config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin) // the server closes stdin when done
		cancel()
	}()
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.ForceCodecV2(rawCodec{})),
	}
	method := "/sluice.v1.DiscoveryService/StreamSnapshots"
	run := sluiceNode
	if cfg.system == "go-control-plane" {
		method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
		run = envoyNode
	}

	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // connects in flight
	errc := make(chan error, 1)
	for i := range cfg.nodes {
		sem <- struct{}{}
		conn, err := grpc.NewClient(cfg.addr, opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		wg.Go(func() {
			st, err := conn.NewStream(ctx, streamDesc, method)
			<-sem
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
			if err := run(st, cfg, fmt.Sprintf("node-%d", i)); err != nil && ctx.Err() == nil {
				select {
				case errc <- fmt.Errorf("node-%d: %w", i, err):
				default:
				}
			}
		})
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	wg.Wait()
	return nil
}

func send(st grpc.ClientStream, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return st.SendMsg(&frame{b})
}

// envelope returns the string fields of a message (version, nonce, type)
// by number, skipping everything else undecoded.
func envelope(b []byte, fields ...protowire.Number) []string {
	out := make([]string, len(fields))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return out
		}
		if typ == protowire.BytesType {
			for i, f := range fields {
				if f == num {
					v, _ := protowire.ConsumeBytes(b)
					out[i] = string(v)
				}
			}
		}
		b = b[m:]
	}
	return out
}

func sluiceNode(st grpc.ClientStream, cfg config, id string) error {
	if err := send(st, &sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: id}, AcceptDeltas: cfg.deltas}); err != nil {
		return err
	}
	var base *sluicev1.Snapshot
	for {
		var f frame
		if err := st.RecvMsg(&f); err != nil {
			return err
		}
		var version, nonce string
		if cfg.decode {
			var r sluicev1.DiscoveryResponse
			if err := proto.Unmarshal(f.b, &r); err != nil {
				return err
			}
			version, nonce = r.GetVersionInfo(), r.GetNonce()
			if d := r.GetDelta(); d != nil {
				next, err := dpdiscovery.ApplyDelta(base, d)
				if err != nil {
					return err
				}
				base = next
			} else {
				base = r.GetSnapshot()
			}
		} else {
			e := envelope(f.b, 1, 2)
			version, nonce = e[0], e[1]
		}
		if err := send(st, &sluicev1.DiscoveryRequest{VersionInfo: version, ResponseNonce: nonce}); err != nil {
			return err
		}
	}
}

func envoyNode(st grpc.ClientStream, cfg config, id string) error {
	var names []string
	for c := range cfg.clusters {
		names = append(names, fmt.Sprintf("cluster-%d", c))
	}
	resourceNames := func(typeURL string) []string {
		if typeURL == resource.EndpointType {
			return names
		}
		return nil // wildcard
	}
	node := &corev3.Node{Id: id, Cluster: "fleet"}
	// Envoy's order on ADS: clusters, their endpoints, listeners.
	for _, t := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType} {
		if err := send(st, &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: t, ResourceNames: resourceNames(t)}); err != nil {
			return err
		}
		node = nil // on the first request only
	}
	for {
		var f frame
		if err := st.RecvMsg(&f); err != nil {
			return err
		}
		var version, typeURL, nonce string
		if cfg.decode {
			var r discoverygrpc.DiscoveryResponse
			if err := proto.Unmarshal(f.b, &r); err != nil {
				return err
			}
			for _, a := range r.GetResources() {
				if _, err := a.UnmarshalNew(); err != nil {
					return err
				}
			}
			version, typeURL, nonce = r.GetVersionInfo(), r.GetTypeUrl(), r.GetNonce()
		} else {
			e := envelope(f.b, 1, 4, 5)
			version, typeURL, nonce = e[0], e[1], e[2]
		}
		if err := send(st, &discoverygrpc.DiscoveryRequest{VersionInfo: version, TypeUrl: typeURL, ResponseNonce: nonce, ResourceNames: resourceNames(typeURL)}); err != nil {
			return err
		}
	}
}
