package tcpproxy

import (
	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/meter"
)

// meterSession counts the session info records in m; mx holds what the
// record does not (the client's address, the cluster's meter, the connect
// time, whether the access log sampled the session).
func meterSession(m *meter.Listener, info *conntrack.ConnInfo, mx *meter.Exchange) {
	mx.Start, mx.Proto = info.Start, meter.ProtoTCP
	mx.Endpoint = info.Endpoint
	mx.BytesIn, mx.BytesOut = info.BytesIn, info.BytesOut
	mx.CountedIn, mx.CountedOut = info.BytesIn, info.BytesOut // as they moved (session.settle)
	mx.Total = info.Duration
	mx.Retries = uint32(info.Retries)
	mx.Cause = info.Reason
	m.Done(mx)
}
