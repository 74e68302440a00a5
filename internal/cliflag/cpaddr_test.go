package cliflag

import (
	"slices"
	"testing"
)

func TestControlPlanes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "127.0.0.1:7070", want: []string{"127.0.0.1:7070"}},
		{in: " cp-a:7070, [::1]:7071 ,", want: []string{"cp-a:7070", "[::1]:7071"}},
		{in: "dns:///cp.example:7070", want: []string{"dns:///cp.example:7070"}},
		{in: "unix:/run/sluice.sock", want: []string{"unix:/run/sluice.sock"}},
		{in: "dns:cp:7070", want: []string{"dns:cp:7070"}},
		{in: "cp-a:7070,dns:///cp-b:7070", err: `"dns:///cp-b:7070" is a gRPC target, which works only alone; give the replicas as host:port`},
		{in: "127.0.0.1", err: `"127.0.0.1" has no port; give the control plane's host:port (its --listen address), e.g. 127.0.0.1:7070`},
		{in: "cp-a:7070,cp-b", err: `"cp-b" has no port; give the control plane's host:port (its --listen address), e.g. 127.0.0.1:7070`},
		{in: "http://127.0.0.1:7070", err: `"http://127.0.0.1:7070" is a URL of http; give the control plane's host:port (its --listen address), e.g. 127.0.0.1:7070`},
		{in: "::1:7070", err: `"::1:7070" is not host:port (write IPv6 addresses in brackets: [::1]:7070)`},
		{in: "cp:http", err: `"cp:http": port "http" is not a number from 1 to 65535`},
		{in: "cp:0", err: `"cp:0": port "0" is not a number from 1 to 65535`},
		{in: " , ", err: `no control plane address in " , "`},
	} {
		got, err := ControlPlanes(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ControlPlanes(%q): %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ControlPlanes(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
