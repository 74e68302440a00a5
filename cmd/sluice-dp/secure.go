package main

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/sluice-lb/sluice/internal/pki"
)

// nodeTLS is the node's TLS to the control plane from --ca, --cert and
// --key: nil without --ca. certID is the node id the certificate names
// ("" without one).
func nodeTLS(caFile, certFile, keyFile string) (cfg *tls.Config, certID string, err error) {
	if caFile == "" {
		if certFile != "" || keyFile != "" {
			return nil, "", errors.New("--cert and --key need --ca, the CA that signed the control plane's certificate")
		}
		return nil, "", nil
	}
	if cfg, err = pki.ClientTLS(caFile, certFile, keyFile); err != nil {
		return nil, "", err
	}
	if certFile == "" {
		return cfg, "", nil
	}
	cert, _, err := pki.LoadCert(certFile)
	if err != nil {
		return nil, "", err
	}
	if certID, err = pki.NodeID(cert); err != nil {
		return nil, "", fmt.Errorf("--cert %s: %w", certFile, err)
	}
	return cfg, certID, nil
}
