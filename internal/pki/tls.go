package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// ServerTLS is the control plane's TLS configuration: its certificate, and
// client certificates verified against caFile when a client sends one.
// Whether a call needs one (node streams do) is for the control plane's
// interceptors to say: operators' tools connect without.
//
// The certificate and key are read again when either file changes (its
// size or modification time, looked at in each handshake), so a renewed
// pair written over them (issue-server-cert) serves the next connections
// without a restart. While the files hold no pair that serves (one
// written, the other not yet), the last one that did serves on.
func ServerTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := loadPair("server certificate", certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if leaf := cert.Leaf; leaf != nil && !serverUsage(leaf.ExtKeyUsage) {
		what := "a client's"
		if id, err := NodeID(leaf); err == nil {
			what = fmt.Sprintf("node %s's", id)
		}
		return nil, fmt.Errorf("server certificate %s is %s, for client authentication only: every client would refuse it (init-ca writes the server's as server.crt)", certFile, what)
	}
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	sv := &serving{certFile: certFile, keyFile: keyFile, cert: &cert, stamp: stamps(certFile, keyFile)}
	return &tls.Config{
		GetCertificate: sv.get,
		ClientCAs:      pool,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		MinVersion:     tls.VersionTLS12,
	}, nil
}

// serving is ServerTLS's certificate, as last read from its files.
type serving struct {
	certFile, keyFile string

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]fileStamp // the files' when cert was read from them
}

// fileStamp tells one state of a file from the next.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stamps(certFile, keyFile string) (st [2]fileStamp) {
	for i, f := range []string{certFile, keyFile} {
		if fi, err := os.Stat(f); err == nil {
			st[i] = fileStamp{fi.Size(), fi.ModTime()}
		}
	}
	return st
}

func (s *serving) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := stamps(s.certFile, s.keyFile); now != s.stamp {
		c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err == nil && c.Leaf != nil && serverUsage(c.Leaf.ExtKeyUsage) {
			s.cert, s.stamp = &c, now
		}
	}
	return s.cert, nil
}

// ServingCertificate returns the certificate a ServerTLS configuration (or
// a clone of one) serves now, as last read from its files; nil for any
// other configuration.
func ServingCertificate(cfg *tls.Config) *x509.Certificate {
	if cfg == nil || cfg.GetCertificate == nil {
		return nil
	}
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil {
		return nil
	}
	return c.Leaf
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
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		cfg.RootCAs = pool
	}
	if certFile == "" && keyFile == "" {
		return cfg, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	first, err := loadPair("client certificate", certFile, keyFile)
	if err != nil {
		return nil, err
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
		return nil, err // "open FILE: …"
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// PoolID tells the certificates of a PEM file (a CA, as LoadPool reads
// it) from others: the start of a SHA-256 of their DER, in hex, so that
// two files with the same certificates have the same id whatever else
// they hold.
func PoolID(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err // "open FILE: …"
	}
	h := sha256.New()
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			h.Write(block.Bytes)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:6]), nil
}

// loadPair is tls.LoadX509KeyPair with errors that name the files: what
// failed to be read names its file, and a certificate and key that do not
// make a pair are both named.
func loadPair(what, certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	var pe *fs.PathError
	switch {
	case err == nil:
		return cert, nil
	case errors.As(err, &pe): // "open FILE: …"
		return cert, fmt.Errorf("%s: %w", what, err)
	}
	return cert, fmt.Errorf("%s %s, key %s: %w", what, certFile, keyFile, err)
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
