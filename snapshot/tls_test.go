package snapshot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/protobuf/proto"
)

func testPair(t *testing.T, name string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func tlsSnapshot(protocol sluicev1.Protocol, certs ...*sluicev1.Certificate) *sluicev1.Snapshot {
	return &sluicev1.Snapshot{
		Clusters: []*sluicev1.Cluster{{Name: "web"}},
		Listeners: []*sluicev1.Listener{{Name: "l", Address: "127.0.0.1:8443", Protocol: protocol, DefaultCluster: "web",
			Tls: &sluicev1.TlsOptions{Certificates: certs}}},
	}
}

func TestValidateTLS(t *testing.T) {
	certA, keyA := testPair(t, "a.example")
	_, keyB := testPair(t, "b.example")
	const http, tcp = sluicev1.Protocol_PROTOCOL_HTTP, sluicev1.Protocol_PROTOCOL_TCP
	for _, tc := range []struct {
		name string
		snap *sluicev1.Snapshot
		want string // "" for valid
	}{
		{"inline", tlsSnapshot(http, &sluicev1.Certificate{CertPem: certA, KeyPem: keyA}), ""},
		{"files", tlsSnapshot(http, &sluicev1.Certificate{CertFile: "/etc/a.crt", KeyFile: "/etc/a.key"}), ""},
		{"inline cert, key file", tlsSnapshot(http, &sluicev1.Certificate{CertPem: certA, KeyFile: "/etc/a.key"}), ""},
		{"TCP listener", tlsSnapshot(tcp, &sluicev1.Certificate{CertPem: certA, KeyPem: keyA}),
			"listeners[0].tls: only allowed when protocol is HTTP"},
		{"no certificate", tlsSnapshot(http), "listeners[0].tls.certificates: "},
		{"cert twice", tlsSnapshot(http, &sluicev1.Certificate{CertPem: certA, CertFile: "/a", KeyPem: keyA}),
			"listeners[0].tls.certificates[0]: give exactly one of cert_pem and cert_file"},
		{"no key", tlsSnapshot(http, &sluicev1.Certificate{CertPem: certA}),
			"listeners[0].tls.certificates[0]: give exactly one of key_pem and key_file"},
		{"not PEM", tlsSnapshot(http, &sluicev1.Certificate{CertPem: "hello", KeyFile: "/a"}),
			"listeners[0].tls.certificates[0].cert_pem: no PEM CERTIFICATE block found"},
		{"key of another certificate", tlsSnapshot(http, &sluicev1.Certificate{CertPem: certA, KeyPem: keyB}),
			"listeners[0].tls.certificates[0]: certificate and key: private key does not match public key"},
		{"redacted key, nothing stored", tlsSnapshot(http, &sluicev1.Certificate{CertPem: certA, KeyPem: Redacted}),
			"listeners[0].tls.certificates[0].key_pem: <redacted>: no stored certificate"},
	} {
		err := Validate(tc.snap)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "PRIVATE KEY"):
			t.Errorf("%s: the error quotes the key: %v", tc.name, err)
		}
	}
}

func TestRedactAndRestoreSecrets(t *testing.T) {
	certA, keyA := testPair(t, "a.example")
	certB, keyB := testPair(t, "b.example")
	stored := tlsSnapshot(sluicev1.Protocol_PROTOCOL_HTTP,
		&sluicev1.Certificate{CertPem: certA, KeyPem: keyA},
		&sluicev1.Certificate{CertPem: certB, KeyPem: keyB},
		&sluicev1.Certificate{CertFile: "/c.crt", KeyFile: "/c.key"})
	orig := proto.Clone(stored)
	shown := RedactSecrets(stored)
	if !proto.Equal(stored, orig) {
		t.Fatal("RedactSecrets changed its argument")
	}
	certs := shown.GetListeners()[0].GetTls().GetCertificates()
	if certs[0].GetKeyPem() != Redacted || certs[1].GetKeyPem() != Redacted || certs[2].GetKeyFile() != "/c.key" {
		t.Fatalf("redacted: %v", certs)
	}
	if !HasRedacted(shown) || HasRedacted(stored) {
		t.Error("HasRedacted")
	}
	// Applied back, with the certificates in another order: each key
	// follows its certificate.
	back := proto.Clone(shown).(*sluicev1.Snapshot)
	bc := back.GetListeners()[0].GetTls().GetCertificates()
	bc[0], bc[1] = bc[1], bc[0]
	RestoreSecrets(back, stored)
	if bc[0].GetKeyPem() != keyB || bc[1].GetKeyPem() != keyA {
		t.Error("RestoreSecrets did not put each key back with its certificate")
	}
	if err := Validate(back); err != nil {
		t.Error(err)
	}
	// Nothing to hide: no copy is made.
	if plain := tlsSnapshot(sluicev1.Protocol_PROTOCOL_HTTP, certs[2]); RedactSecrets(plain) != plain {
		t.Error("RedactSecrets copied a snapshot without inline keys")
	}
}

// TestValidateOffline: away from the control plane a redacted key is
// taken as the stored one (get's output validates), its certificate is
// still checked, and the snapshot itself is left as it was.
func TestValidateOffline(t *testing.T) {
	certA, _ := testPair(t, "a.example")
	shown := tlsSnapshot(sluicev1.Protocol_PROTOCOL_HTTP, &sluicev1.Certificate{CertPem: certA, KeyPem: Redacted})
	if err := ValidateOffline(shown); err != nil {
		t.Errorf("a redacted key with its certificate: %v", err)
	}
	if k := shown.GetListeners()[0].GetTls().GetCertificates()[0].GetKeyPem(); k != Redacted {
		t.Errorf("ValidateOffline changed the key to %q", k)
	}
	bad := tlsSnapshot(sluicev1.Protocol_PROTOCOL_HTTP, &sluicev1.Certificate{CertPem: "hello", KeyPem: Redacted})
	const want = "listeners[0].tls.certificates[0].cert_pem: no PEM CERTIFICATE block found"
	if err := ValidateOffline(bad); err == nil || err.Error() != want {
		t.Errorf("a redacted key with a bad certificate: %v, want %q", err, want)
	}
	if err := Validate(shown); err == nil {
		t.Error("Validate took a redacted key with nothing stored")
	}
	both := tlsSnapshot(sluicev1.Protocol_PROTOCOL_HTTP, &sluicev1.Certificate{CertPem: certA, KeyPem: Redacted, KeyFile: "/k"})
	if err := ValidateOffline(both); err == nil || !strings.Contains(err.Error(), "give exactly one of key_pem and key_file") {
		t.Errorf("a redacted key and a key_file: %v, want the fault apply would give", err)
	}
}
