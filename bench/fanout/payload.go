package main

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// shape is the fleet's configuration: clusters of endpoints, and
// listeners that each send to one cluster.
type shape struct {
	clusters, endpoints, listeners int
}

// weight is endpoint e of cluster c's weight in round round. With
// change "all" every weight changes each round; with "one" only the first
// endpoint of the middle cluster does.
func weight(c, e, round, clusters int, change string) uint32 {
	if change == "one" {
		if c == clusters/2 && e == 0 {
			return uint32(round%255) + 1
		}
		return uint32(e%255) + 1
	}
	return uint32((round+e)%256) + 1
}

func endpointIP(c, e int) string { return fmt.Sprintf("10.%d.%d.%d", c/256, c%256, e%256) }

// sluiceSnapshot is the Sluice snapshot of round round.
func sluiceSnapshot(sh shape, round int, change string) *sluicev1.Snapshot {
	s := &sluicev1.Snapshot{}
	for c := range sh.clusters {
		cl := &sluicev1.Cluster{
			Name:           fmt.Sprintf("cluster-%d", c),
			LbPolicy:       sluicev1.LbPolicy_LB_POLICY_ROUND_ROBIN,
			ConnectTimeout: durationpb.New(5 * time.Second),
		}
		for e := range sh.endpoints {
			cl.Endpoints = append(cl.Endpoints, &sluicev1.Endpoint{
				Name:    fmt.Sprintf("ep-%d", e),
				Address: endpointIP(c, e) + ":8080",
				Weight:  proto.Uint32(weight(c, e, round, sh.clusters, change)),
			})
		}
		s.Clusters = append(s.Clusters, cl)
	}
	for l := range sh.listeners {
		s.Listeners = append(s.Listeners, &sluicev1.Listener{
			Name:           fmt.Sprintf("listener-%d", l),
			Address:        fmt.Sprintf("0.0.0.0:%d", 10000+l),
			Protocol:       sluicev1.Protocol_PROTOCOL_TCP,
			DefaultCluster: fmt.Sprintf("cluster-%d", l%sh.clusters),
		})
	}
	return s
}

// envoyResources is the same configuration as Envoy resources: an EDS
// Cluster and a ClusterLoadAssignment per cluster, and a Listener with a
// tcp_proxy filter per listener.
func envoyResources(sh shape, round int, change string) map[resource.Type][]types.Resource {
	out := map[resource.Type][]types.Resource{}
	for c := range sh.clusters {
		name := fmt.Sprintf("cluster-%d", c)
		out[resource.ClusterType] = append(out[resource.ClusterType], &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(5 * time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
				EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			},
		})
		var lbs []*endpointv3.LbEndpoint
		for e := range sh.endpoints {
			lbs = append(lbs, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(endpointIP(c, e), 8080),
				}},
				LoadBalancingWeight: wrapperspb.UInt32(weight(c, e, round, sh.clusters, change)),
			})
		}
		out[resource.EndpointType] = append(out[resource.EndpointType], &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
		})
	}
	for l := range sh.listeners {
		tcp, err := anypb.New(&tcpproxyv3.TcpProxy{
			StatPrefix:       fmt.Sprintf("listener-%d", l),
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: fmt.Sprintf("cluster-%d", l%sh.clusters)},
		})
		if err != nil {
			panic(err)
		}
		out[resource.ListenerType] = append(out[resource.ListenerType], &listenerv3.Listener{
			Name:    fmt.Sprintf("listener-%d", l),
			Address: socketAddress("0.0.0.0", uint32(10000+l)),
			FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp}}},
			}},
		})
	}
	return out
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// envoyPayloadSize is the encoded size of the resources.
func envoyPayloadSize(res map[resource.Type][]types.Resource) int {
	n := 0
	for _, rs := range res {
		for _, r := range rs {
			n += proto.Size(r)
		}
	}
	return n
}
