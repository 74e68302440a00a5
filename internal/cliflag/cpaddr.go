package cliflag

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// ControlPlanes splits a --cp value, one control plane's address or
// several replicas' separated by commas, and checks each is host:port. A
// mistake would otherwise be found only by dialling: without a port gRPC
// dials :443, and a URL is never a valid target, so a node would retry
// it forever. A gRPC target of a scheme gRPC resolves (dns:///host:port,
// unix:/path) is passed on unchecked, when it is the only one.
func ControlPlanes(list string) ([]string, error) {
	var out []string
	target := "" // a gRPC target among them
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		isTarget, err := checkHostPort(a)
		if err != nil {
			return nil, err
		}
		if isTarget {
			target = a
		}
		out = append(out, a)
	}
	switch {
	case len(out) == 0:
		return nil, fmt.Errorf("no control plane address in %q", list)
	case target != "" && len(out) > 1:
		// Several replicas are dialled as addresses, one by one.
		return nil, fmt.Errorf("%q is a gRPC target, which works only alone; give the replicas as host:port", target)
	}
	return out, nil
}

// grpcSchemes are the schemes of the gRPC targets passed on unchecked.
var grpcSchemes = []string{"dns", "unix", "unix-abstract", "passthrough", "xds", "vsock"}

// give is the advice every refusal of an address ends with.
const give = "give the control plane's host:port (its --listen address), e.g. 127.0.0.1:7070"

// checkHostPort says what is wrong with a as one control plane's address,
// and whether it is a gRPC target of a scheme gRPC resolves (dns:///,
// unix:), passed on unchecked.
func checkHostPort(a string) (target bool, _ error) {
	if scheme, _, ok := strings.Cut(a, ":"); ok && slices.Contains(grpcSchemes, strings.ToLower(scheme)) {
		return true, nil // dns:///cp.example:7070, dns:cp:7070, unix:/run/cp.sock
	}
	if scheme, _, ok := strings.Cut(a, "://"); ok {
		return false, fmt.Errorf("%q is a URL of %s; %s", a, scheme, give)
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return false, fmt.Errorf("%q has no port; %s", a, give)
		}
		return false, fmt.Errorf("%q is not host:port (write IPv6 addresses in brackets: [::1]:7070)", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return false, fmt.Errorf("%q: port %q is not a number from 1 to 65535", a, port)
	}
	return false, nil
}
