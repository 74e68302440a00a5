package main

import (
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// dialCP returns a connection to the control plane at cp, with the
// transport options sec gives (TLS or not): one address, or several
// replicas' comma-separated, as sluice-dp takes them (the two share
// $SLUICE_CP). With several, gRPC's pick_first policy uses the first that
// accepts a connection, in the order given: any replica takes every
// change and lists every node. Connection records and endpoint stats are
// kept by the replica a node reports to; conns, stats and top ask the
// others at their names (replicas.go).
func dialCP(cp string, sec []grpc.DialOption) (*grpc.ClientConn, error) {
	opts := append(sec,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	)
	if !strings.Contains(cp, ",") {
		return grpc.NewClient(cp, opts...)
	}
	var addrs []resolver.Address
	for _, a := range strings.Split(cp, ",") {
		if a = strings.TrimSpace(a); a != "" {
			// Each replica's certificate is checked against the host it
			// is dialled at, as when it is dialled alone, not against
			// the target's made-up name. The operator gave the list.
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				host = a
			}
			addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
		}
	}
	r := manual.NewBuilderWithScheme("sluice-cp")
	r.InitialState(resolver.State{Addresses: addrs})
	return grpc.NewClient(r.Scheme()+":///control-plane", append(opts, grpc.WithResolvers(r))...)
}
