package snapshot

import (
	"fmt"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// proxyProtocolErrors checks a listener's proxy_protocol block: every
// trusted source is an address or a prefix, as match.source takes them.
// send_proxy needs no check beyond PGV's: an endpoint may say anything
// whatever its cluster says.
func proxyProtocolErrors(l *sluicev1.Listener, path string, add func(path, format string, args ...any)) {
	for i, src := range l.GetProxyProtocol().GetTrustedSources() {
		if _, err := ParseSource(src); err != nil {
			add(fmt.Sprintf("%s.trusted_sources[%d]", path, i), "%s", err.Error())
		}
	}
}
