package node

import (
	"crypto/tls"
	"fmt"
	"os"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// tlsConfig builds the server TLS configuration of listener ls, or nil
// when it does not terminate TLS. Certificate files are read now, at
// apply: a missing or bad file fails the apply (a NACK naming it), and a
// renewed file takes effect with the next apply.
//
// crypto/tls picks, among several certificates, the first whose names
// cover the client's SNI, and the first one when none does, which is what
// the snapshot promises.
//
// running is the listener's configuration until now, if any: the new one
// starts as its clone, which keeps its session ticket keys, so that an
// apply does not send every returning client through a full handshake.
func tlsConfig(ls *sluicev1.Listener, running *tls.Config) (*tls.Config, error) {
	t := ls.GetTls()
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{}
	if running != nil {
		cfg = running.Clone()
		cfg.Certificates = nil
	}
	cfg.MinVersion = tls.VersionTLS12
	cfg.NextProtos = t.GetAlpn()
	if t.GetMinVersion() == sluicev1.TlsVersion_TLS_VERSION_TLS_1_3 {
		cfg.MinVersion = tls.VersionTLS13
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	for i, c := range t.GetCertificates() {
		cert, err := snapshot.ParseCertificateFiles(c, os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}
