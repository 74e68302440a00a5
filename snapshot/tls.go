package snapshot

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/protobuf/proto"
)

// Redacted stands for a private key in what the control plane shows. Given
// back in an apply, it means "keep the key stored with this certificate",
// so `sluicectl get > f.yaml; sluicectl apply -f f.yaml` round-trips.
const Redacted = "<redacted>"

// tlsErrors checks a listener's TLS block. Inline certificates are parsed
// here, so a bad one is refused by the control plane with its path; files
// are read by the node when it applies the snapshot.
func tlsErrors(l *sluicev1.Listener, path string, add func(path, format string, args ...any)) {
	t := l.GetTls()
	if t == nil {
		return
	}
	if l.GetProtocol() != sluicev1.Protocol_PROTOCOL_HTTP {
		add(path, "only allowed when protocol is HTTP")
	}
	for i, c := range t.GetCertificates() {
		p := fmt.Sprintf("%s.certificates[%d]", path, i)
		switch {
		case (c.GetCertPem() == "") == (c.GetCertFile() == ""):
			add(p, "give exactly one of cert_pem and cert_file")
		case (c.GetKeyPem() == "") == (c.GetKeyFile() == ""):
			add(p, "give exactly one of key_pem and key_file")
		case c.GetKeyPem() == Redacted:
			add(p+".key_pem", "%s: no stored certificate has this cert_pem, so there is no key to keep; give the key", Redacted)
		case c.GetCertPem() != "" && c.GetKeyPem() != "":
			if _, err := parsePair([]byte(c.GetCertPem()), []byte(c.GetKeyPem())); err != nil {
				add(p, "%v", err)
			}
		case c.GetCertPem() != "":
			if err := checkChain([]byte(c.GetCertPem())); err != nil {
				add(p+".cert_pem", "%v", err)
			}
		}
	}
}

// ParseCertificateFiles parses a certificate and key read from files
// (cert_file, key_file) or given inline, whichever the certificate names.
func ParseCertificateFiles(c *sluicev1.Certificate, read func(name string) ([]byte, error)) (tls.Certificate, error) {
	certPEM, keyPEM := []byte(c.GetCertPem()), []byte(c.GetKeyPem())
	var err error
	if f := c.GetCertFile(); f != "" {
		if certPEM, err = read(f); err != nil {
			return tls.Certificate{}, fmt.Errorf("cert_file: %w", err)
		}
	}
	if f := c.GetKeyFile(); f != "" {
		if keyPEM, err = read(f); err != nil {
			return tls.Certificate{}, fmt.Errorf("key_file: %w", err)
		}
	}
	return parsePair(certPEM, keyPEM)
}

// parsePair parses a certificate chain and its key, with errors that never
// quote the key.
func parsePair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	if err := checkChain(certPEM); err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls says what is wrong without quoting the key.
		return tls.Certificate{}, fmt.Errorf("certificate and key: %s", strings.TrimPrefix(err.Error(), "tls: "))
	}
	return cert, nil
}

// checkChain checks that certPEM holds at least one certificate and that
// each parses.
func checkChain(certPEM []byte) error {
	_, err := ParseCAs(certPEM)
	return err
}

// RedactSecrets returns s with every inline private key replaced by
// Redacted; s itself is not changed. Without keys it returns s.
func RedactSecrets(s *sluicev1.Snapshot) *sluicev1.Snapshot {
	if !hasInlineKeys(s) {
		return s
	}
	s = proto.Clone(s).(*sluicev1.Snapshot)
	for _, l := range s.GetListeners() {
		for _, c := range l.GetTls().GetCertificates() {
			if c.GetKeyPem() != "" {
				c.KeyPem = Redacted
			}
		}
	}
	return s
}

// ValidateOffline is [Validate] for a snapshot checked away from the
// control plane (sluicectl validate): a key given as Redacted stands for
// the one the control plane stores with the same cert_pem, which only it
// can look up, so it is taken as given and only its certificate is
// checked. Apply refuses it if the control plane has no such key.
func ValidateOffline(s *sluicev1.Snapshot) error {
	if !HasRedacted(s) {
		return Validate(s)
	}
	s = proto.Clone(s).(*sluicev1.Snapshot)
	for _, l := range s.GetListeners() {
		for _, c := range l.GetTls().GetCertificates() {
			if c.GetKeyPem() == Redacted && c.GetKeyFile() == "" {
				// A key the node would read from elsewhere, as a
				// key_file is: the certificate is checked alone.
				c.KeyPem, c.KeyFile = "", "stored key"
			}
		}
	}
	return Validate(s)
}

func hasInlineKeys(s *sluicev1.Snapshot) bool {
	return anyKey(s, func(k string) bool { return k != "" })
}

// HasRedacted reports whether a key of s is given as Redacted.
func HasRedacted(s *sluicev1.Snapshot) bool {
	return anyKey(s, func(k string) bool { return k == Redacted })
}

func anyKey(s *sluicev1.Snapshot, match func(key string) bool) bool {
	for _, l := range s.GetListeners() {
		for _, c := range l.GetTls().GetCertificates() {
			if match(c.GetKeyPem()) {
				return true
			}
		}
	}
	return false
}

// RestoreSecrets puts back, in next, each key given as Redacted: the key
// stored in prev with the same cert_pem. Keys it cannot restore stay
// Redacted, and Validate refuses them with their path.
func RestoreSecrets(next, prev *sluicev1.Snapshot) {
	var keys map[string]string
	for _, l := range next.GetListeners() {
		for _, c := range l.GetTls().GetCertificates() {
			if c.GetKeyPem() != Redacted {
				continue
			}
			if keys == nil {
				keys = map[string]string{}
				for _, pl := range prev.GetListeners() {
					for _, pc := range pl.GetTls().GetCertificates() {
						if k := pc.GetKeyPem(); k != "" && k != Redacted {
							keys[pc.GetCertPem()] = k
						}
					}
				}
			}
			if k, ok := keys[c.GetCertPem()]; ok {
				c.KeyPem = k
			}
		}
	}
}

// nextPEM returns the DER bytes of the next PEM block of type typ in b and
// what follows it; nil when there is none. Blocks of other types are
// skipped.
func nextPEM(b []byte, typ string) (der, rest []byte) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, nil
		}
		if block.Type == typ {
			return block.Bytes, b
		}
	}
}
