package cliflag

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ControlPlanes splits a --cp value, one control plane's address or
// several replicas' separated by commas, and checks each is host:port. A
// mistake would otherwise be found only by dialling: without a port gRPC
// dials :443, and a URL is never a valid target, so a node would retry
// it forever. gRPC targets with a scheme of their own (dns:///host:port,
// unix:/path) are passed on unchecked.
func ControlPlanes(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if err := checkHostPort(a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no control plane address in %q", list)
	}
	return out, nil
}

// give is the advice every refusal of an address ends with.
const give = "give the control plane's host:port (its --listen address), e.g. 127.0.0.1:7070"

func checkHostPort(a string) error {
	if scheme, _, ok := strings.Cut(a, "://"); ok {
		switch strings.ToLower(scheme) {
		case "http", "https", "grpc", "grpcs", "tcp":
			return fmt.Errorf("%q is a URL; %s", a, give)
		}
		return nil // a gRPC target: dns:///host:port
	}
	if strings.HasPrefix(a, "unix:") || strings.HasPrefix(a, "unix-abstract:") {
		return nil
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return fmt.Errorf("%q has no port; %s", a, give)
		}
		return fmt.Errorf("%q is not host:port (write IPv6 addresses in brackets: [::1]:7070)", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", a, port)
	}
	return nil
}
