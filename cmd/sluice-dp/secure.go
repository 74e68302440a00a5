package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-lb/sluice/internal/pki"
)

// nodeTLS is the node's TLS to the control plane from --ca, --cert and
// --key: nil without --ca. cert is the node certificate, nil without one;
// certID is the node id it names.
func nodeTLS(caFile, certFile, keyFile string) (cfg *tls.Config, cert *x509.Certificate, certID string, err error) {
	if caFile == "" {
		if certFile != "" || keyFile != "" {
			return nil, nil, "", errors.New("--cert and --key need --ca, the CA that signed the control plane's certificate")
		}
		return nil, nil, "", nil
	}
	if cfg, err = pki.ClientTLS(caFile, certFile, keyFile); err != nil {
		return nil, nil, "", fmt.Errorf("--ca/--cert/--key: %w", err)
	}
	if certFile == "" {
		return cfg, nil, "", nil
	}
	if cert, _, err = pki.LoadCert(certFile); err != nil {
		return nil, nil, "", fmt.Errorf("--cert: %w", err)
	}
	if certID, err = pki.NodeID(cert); err != nil {
		return nil, nil, "", fmt.Errorf("--cert %s: %w", certFile, err)
	}
	return cfg, cert, certID, nil
}

// certExpiresSoon is how long before its end the node warns of its
// certificate at start.
const certExpiresSoon = 7 * 24 * time.Hour

// logValidity says at start when the node certificate in file is not
// valid at now, or, when the node does not renew it itself (renewing),
// soon will not be: the control plane refuses it then, and all the node
// itself sees of that is its connection closing. The node starts all the
// same: it rereads the files at every reconnect, so a renewed certificate
// written over them is taken without a restart. A node that renews says
// so when a renewal fails.
func logValidity(log *slog.Logger, file string, cert *x509.Certificate, now time.Time, renewing bool) {
	switch {
	case now.After(cert.NotAfter):
		log.Error("--cert has expired: the control plane will refuse this node; issue a new certificate with 'sluicectl cert issue'",
			"cert", file, "expired", cert.NotAfter.Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		log.Error("--cert is not valid yet: the control plane will refuse this node until then; is this machine's clock right?",
			"cert", file, "valid_from", cert.NotBefore.Format(time.RFC3339))
	case !renewing && cert.NotAfter.Sub(now) < certExpiresSoon:
		log.Warn("--cert expires soon; issue a new certificate with 'sluicectl cert issue'",
			"cert", file, "expires", cert.NotAfter.Format(time.RFC3339))
	}
}

// watchValidity has every handshake with the control plane log, as
// logValidity does at start, when the certificate it sends is not valid:
// one that expires while the node runs is refused at the next reconnect,
// and over TLS 1.3 the node sees only its connection failing (`broken
// pipe`), not the control plane's reason.
func watchValidity(log *slog.Logger, file string, cfg *tls.Config) {
	get := cfg.GetClientCertificate
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := get(cri)
		if err == nil && c.Leaf != nil {
			if now := time.Now(); now.After(c.Leaf.NotAfter) || now.Before(c.Leaf.NotBefore) {
				logValidity(log, file, c.Leaf, now, true)
			}
		}
		return c, err
	}
}
