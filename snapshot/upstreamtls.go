package snapshot

import (
	"crypto/x509"
	"fmt"
	"net/netip"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// upstreamTLSErrors checks the tls block of clusters[i], how the node
// speaks TLS to its endpoints. An inline CA is parsed here, so a bad one is
// refused with its path; a ca_file is read by the node when it applies the
// snapshot. CA certificates are public: nothing here is redacted.
func upstreamTLSErrors(t *sluicev1.UpstreamTls, i int, add func(path, format string, args ...any)) {
	if t == nil {
		return
	}
	p := fmt.Sprintf("clusters[%d].tls", i)
	if t.GetCaPem() != "" && t.GetCaFile() != "" {
		add(p, "give at most one of ca_pem and ca_file")
	}
	if t.GetInsecureSkipVerify() && (t.GetCaPem() != "" || t.GetCaFile() != "") {
		add(p+".insecure_skip_verify", "verifies nothing, so the ca_pem or ca_file given would go unused: drop one or the other")
	}
	if ca := t.GetCaPem(); ca != "" {
		if _, err := ParseCAs([]byte(ca)); err != nil {
			add(p+".ca_pem", "%v", err)
		}
	}
	if sn := t.GetServerName(); sn != "" && !isDNSName(sn) {
		if _, err := netip.ParseAddr(sn); err != nil {
			add(p+".server_name", "%q is neither a DNS name nor an IP address", sn)
		}
	}
}

// ParseCAs parses PEM certificate authorities (a ca_pem, or what a node
// read from a ca_file) into a pool: at least one CERTIFICATE block, each
// of which must parse.
func ParseCAs(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; n++ {
		var der []byte
		if der, rest = nextPEM(rest, "CERTIFICATE"); der == nil {
			break
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", n+1, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, fmt.Errorf("no PEM CERTIFICATE block found")
	}
	return pool, nil
}
