package node

import (
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestKeepAliveConfig: a tcp_keepalive turns probes on with what it sets
// and leaves the rest to the system (-1: unchanged); none turns them off.
func TestKeepAliveConfig(t *testing.T) {
	if got := keepAliveConfig(nil); got != nil {
		t.Errorf("no tcp_keepalive: %+v, want nil (no probes)", *got)
	}
	for _, tt := range []struct {
		ka   *sluicev1.TcpKeepalive
		want net.KeepAliveConfig
	}{
		{&sluicev1.TcpKeepalive{}, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}},
		{&sluicev1.TcpKeepalive{Idle: durationpb.New(7 * time.Second)}, net.KeepAliveConfig{Enable: true, Idle: 7 * time.Second, Interval: -1, Count: -1}},
		{
			&sluicev1.TcpKeepalive{Idle: durationpb.New(time.Minute), Interval: durationpb.New(5 * time.Second), Probes: 3},
			net.KeepAliveConfig{Enable: true, Idle: time.Minute, Interval: 5 * time.Second, Count: 3},
		},
	} {
		if got := keepAliveConfig(tt.ka); got == nil || *got != tt.want {
			t.Errorf("keepAliveConfig(%v) = %+v, want %+v", tt.ka, got, tt.want)
		}
	}
}
