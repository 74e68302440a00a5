package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// ServerTLS is the control plane's TLS configuration: its certificate, and
// client certificates verified against caFile when a client sends one.
// Whether a call needs one (node streams do) is for the control plane's
// interceptors to say: operators' tools connect without.
func ServerTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	if leaf := cert.Leaf; leaf != nil && !serverUsage(leaf.ExtKeyUsage) {
		what := "a client's"
		if id, err := NodeID(leaf); err == nil {
			what = fmt.Sprintf("node %s's", id)
		}
		return nil, fmt.Errorf("pki: server certificate %s is %s, for client authentication only: every client would refuse it (init-ca writes the server's as server.crt)", certFile, what)
	}
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// ClientTLS is a client's TLS configuration: the server (the control
// plane, etcd) is verified against caFile, or against the system's roots
// when caFile is empty; certFile and keyFile, when set, are the client's
// certificate. They are read again at every handshake, so a renewed
// certificate is used from the next reconnect; while they cannot be read,
// the last good pair is.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile == "" && keyFile == "" {
		return cfg, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("pki: a client certificate needs both its certificate and its key file")
	}
	first, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: client certificate: %w", err)
	}
	var (
		mu   sync.Mutex
		last = &first
	)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
			last = &c
		}
		return last, nil
	}
	return cfg, nil
}

// LoadPool reads the PEM certificates of file into a pool.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pki: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pki: CA: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// serverUsage reports whether a certificate with these extended key
// usages may serve TLS: none listed means any.
func serverUsage(usages []x509.ExtKeyUsage) bool {
	if len(usages) == 0 {
		return true
	}
	for _, u := range usages {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}
