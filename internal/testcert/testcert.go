// Package testcert makes certificates for tests: self-signed ones, and
// authorities that sign server certificates, generated in the test, valid
// for an hour.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// CA is a certificate authority of a test.
type CA struct {
	// PEM is its certificate, for a ca_pem or a client's roots.
	PEM  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a new authority.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template("Sluice test CA", nil)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = nil
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{PEM: encode("CERTIFICATE", der), cert: cert, key: key}
}

// Pool is a cert pool holding only the authority.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Server returns a server certificate signed by the authority for names:
// DNS names, and IP addresses (those that parse as one).
func (ca *CA) Server(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := sign(t, names, ca.cert, ca.key)
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Sign returns a PEM certificate and key signed by the authority, for names
// (the first is its common name), for the extended key usages given:
// an etcd server's, which is its own client too, needs both server and
// client authentication.
func (ca *CA) Sign(t testing.TB, usages []x509.ExtKeyUsage, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	return sign(t, names, ca.cert, ca.key, usages...)
}

// SelfSigned returns a PEM certificate and key for names (DNS names, and
// IP addresses), signed by itself.
func SelfSigned(t testing.TB, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	return sign(t, names, nil, nil)
}

// sign makes a certificate for names, signed by parent (itself when nil),
// for usages (server authentication when none).
func sign(t testing.TB, names []string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, usages ...x509.ExtKeyUsage) (certPEM, keyPEM string) {
	t.Helper()
	key := newKey(t)
	tmpl := template(names[0], names)
	if len(usages) > 0 {
		tmpl.ExtKeyUsage = usages
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return encode("CERTIFICATE", der), encode("PRIVATE KEY", kder)
}

func template(cn string, names []string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func encode(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
