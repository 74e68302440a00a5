// Package pki holds Sluice's certificates: the CA an operator gives the
// control plane, the control plane's server certificate, and node
// certificates, which say which node holds them.
//
// A node certificate names its node twice, and both must agree: the
// subject's common name is the node id, and one URI SAN is
// sluice://node/ID (the id path-escaped). The URI SAN is the marker that
// the certificate is a node's: the control plane's server certificate and
// anything else the CA signs carry none, and so can never pass for a node.
// Node certificates have the client-auth extended key usage only; the
// server certificate server-auth only, so neither can stand in for the
// other.
//
// Keys are ECDSA P-256, written as PKCS#8 PEM, mode 0600.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// NodeURIScheme and NodeURIHost make the URI SAN of a node certificate:
// sluice://node/ID.
const (
	NodeURIScheme = "sluice"
	NodeURIHost   = "node"
)

// Default validities.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	NodeValidity   = 365 * 24 * time.Hour
)

// DefaultHosts are the names the server certificate of InitCA covers when
// none are given.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// nodeID is what sluice-dp --node-id accepts (discovery.proto's Node.id).
var nodeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// CheckNodeID refuses what is not a node id, saying what one is.
func CheckNodeID(id string) error {
	if !nodeID.MatchString(id) {
		return fmt.Errorf("%q is not a valid node id: use letters, digits, '.', '_', ':' and '-', starting with a letter or digit, at most 128 characters", id)
	}
	return nil
}

// ErrNotNode says a certificate is not a node certificate.
var ErrNotNode = errors.New("not a node certificate (no sluice://node/ URI SAN)")

// NodeURI returns the URI SAN of node id's certificate.
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: NodeURIScheme, Host: NodeURIHost, Path: "/" + id}
}

// NodeID returns the node id a node certificate names. It fails for a
// certificate without a node URI SAN (ErrNotNode), with two of them, or
// whose common name is not the same id.
func NodeID(cert *x509.Certificate) (string, error) {
	id, found := "", false
	for _, u := range cert.URIs {
		if u.Scheme != NodeURIScheme || u.Host != NodeURIHost {
			continue
		}
		if found {
			return "", errors.New("a node certificate names more than one node")
		}
		found, id = true, strings.TrimPrefix(u.Path, "/")
	}
	if !found {
		return "", ErrNotNode
	}
	if err := CheckNodeID(id); err != nil {
		return "", fmt.Errorf("node certificate: %w", err)
	}
	if cert.Subject.CommonName != id {
		return "", fmt.Errorf("node certificate: common name %q differs from its URI SAN's node %q", cert.Subject.CommonName, id)
	}
	return id, nil
}

// CA is a certificate authority that can sign.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// PEM is Cert, PEM-encoded.
	PEM []byte
}

// NewCA makes a self-signed CA named name, good for valid.
func NewCA(name string, valid time.Duration) (ca *CA, keyPEM []byte, err error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Sluice"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(valid),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("making the CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM(der)}, keyPEM, nil
}

// LoadCA reads a CA's certificate and key. The key file must be readable
// by its owner only: whoever reads it can make node certificates.
func LoadCA(certFile, keyFile string) (*CA, error) {
	cert, pemBytes, err := LoadCert(certFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	if err := CheckPrivate(keyFile); err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	key, err := LoadKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !publicEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s is not the key of the CA in %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, PEM: pemBytes}, nil
}

// IssueServer makes the control plane's server certificate for hosts
// (names and IP addresses), with a new key.
func (ca *CA) IssueServer(hosts []string, valid time.Duration) (certPEMBytes, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("a server certificate needs at least one host")
	}
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"Sluice"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, _, err := ca.sign(tmpl, key.Public(), valid, time.Now())
	if err != nil {
		return nil, nil, err
	}
	return certPEM(der), keyPEM, nil
}

// IssueNode signs the public key of csrPEM (whose signature must hold)
// into a certificate of node id, good for valid from now or until the CA
// expires, whichever comes first.
func (ca *CA) IssueNode(id string, csrPEM []byte, valid time.Duration, now time.Time) (certPEMBytes []byte, notAfter time.Time, err error) {
	if err := CheckNodeID(id); err != nil {
		return nil, time.Time{}, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, time.Time{}, errors.New("the certificate request is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, time.Time{}, fmt.Errorf("certificate request: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{"Sluice"}, OrganizationalUnit: []string{"sluice-node"}},
		URIs:        []*url.URL{NodeURI(id)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, notAfter, err := ca.sign(tmpl, csr.PublicKey, valid, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	return certPEM(der), notAfter, nil
}

func (ca *CA) sign(tmpl *x509.Certificate, pub any, valid time.Duration, now time.Time) ([]byte, time.Time, error) {
	if now.After(ca.Cert.NotAfter) {
		return nil, time.Time{}, fmt.Errorf("the CA expired at %s", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-Backdate)
	tmpl.NotAfter = now.Add(valid)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("signing the certificate: %w", err)
	}
	return der, tmpl.NotAfter.UTC().Truncate(time.Second), nil
}

// Backdate is how long before it is made a certificate's NotBefore is:
// a little clock skew between the machines.
const Backdate = time.Minute

// Validity is how long cert was made to be good for (the valid of
// IssueNode): its NotAfter less its NotBefore, less Backdate. A renewal
// gets as long again.
func Validity(cert *x509.Certificate) time.Duration {
	return max(cert.NotAfter.Sub(cert.NotBefore)-Backdate, time.Second)
}

// RenewalTime is when cert is due for renewal: once two thirds of its
// Validity have passed, as Caddy renews its certificates and kubelet its
// own, early enough that a control plane or CA away for days does not
// leave it to expire.
func RenewalTime(cert *x509.Certificate) time.Time {
	return cert.NotAfter.Add(-Validity(cert) / 3)
}

// CheckOutlives refuses to renew cert with ca when ca expires no later
// than cert does: a renewed certificate, which cannot outlive its CA,
// would end no later than the one it replaces.
func (ca *CA) CheckOutlives(cert *x509.Certificate) error {
	if ca.Cert.NotAfter.After(cert.NotAfter) {
		return nil
	}
	return fmt.Errorf("the CA expires at %s, when this certificate does: a renewed one could not outlive it; the fleet needs a new CA",
		ca.Cert.NotAfter.UTC().Format(time.RFC3339))
}

// ParseFor parses the first certificate of certPEM and checks that it is
// one of key, as a certificate issued for key's request must be.
func ParseFor(certPEM []byte, key crypto.Signer) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	if !publicEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("the certificate is not of the key its request was signed with")
	}
	return cert, nil
}

// NewKey makes an ECDSA P-256 key and its PKCS#8 PEM.
func NewKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NodeCSR is the certificate request a node's key signs for IssueNode.
func NodeCSR(id string, key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id},
		URIs:    []*url.URL{NodeURI(id)},
	}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// LoadCert reads the first certificate of a PEM file.
func LoadCert(file string) (*x509.Certificate, []byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err // "open FILE: …"
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s holds no PEM CERTIFICATE", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return cert, b, nil
}

// LoadKey reads a PEM private key: PKCS#8, EC or PKCS#1 RSA.
func LoadKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err // "open FILE: …"
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM private key", file)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s holds a %s, not a private key", file, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", file, key)
	}
	return signer, nil
}

// CheckPrivate refuses a file that others than its owner may read or
// write.
func CheckPrivate(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err // "stat FILE: …"
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is mode %04o: it must be readable by its owner only (chmod 600 %s)", file, fi.Mode().Perm(), file)
	}
	return nil
}

// WriteFile writes data to path with mode perm, replacing any file there
// in one rename, so a reader never sees half a key and a key is never,
// even briefly, more readable than perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	// The errors name path, not the temporary file beside it, which its
	// user never asked for.
	fail := func(err error) error {
		var pe *fs.PathError
		var le *os.LinkError
		switch {
		case errors.As(err, &pe):
			err = pe.Err
		case errors.As(err, &le):
			err = le.Err
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	return nil
}

// InitCA creates, in dir (made 0700 if missing), a CA (ca.crt, ca.key) and
// a server certificate for hosts signed by it (server.crt, server.key),
// keys mode 0600. It refuses to overwrite any of them. It returns the
// paths written.
func InitCA(dir string, hosts []string, serverValid time.Duration) ([]string, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err // "mkdir DIR: …"
	}
	names := []string{"ca.crt", "ca.key", "server.crt", "server.key"}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(dir, n)
		if _, err := os.Lstat(paths[i]); err == nil {
			return nil, fmt.Errorf("%s exists; refusing to overwrite a CA (remove it, or choose another --dir)", paths[i])
		}
	}
	ca, caKey, err := NewCA("Sluice CA", CAValidity)
	if err != nil {
		return nil, err
	}
	srv, srvKey, err := ca.IssueServer(hosts, serverValid)
	if err != nil {
		return nil, err
	}
	data := [][]byte{ca.PEM, caKey, srv, srvKey}
	perms := []os.FileMode{0o644, 0o600, 0o644, 0o600}
	for i := range paths {
		if err := WriteFile(paths[i], data[i], perms[i]); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// RenewServer writes a new server certificate and key, signed by the CA
// init-ca wrote into dir, over dir's server.crt and server.key (see
// WriteServer). The certificate covers hosts, or, when none are given,
// the names of the one it replaces. It returns the paths written, the
// names covered and when the new certificate expires.
func RenewServer(dir string, hosts []string, valid time.Duration) (paths, names []string, notAfter time.Time, err error) {
	ca, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if len(hosts) == 0 {
		old, _, err := LoadCert(certFile)
		if err != nil {
			return nil, nil, time.Time{}, fmt.Errorf("the names to cover: %w (give them)", err)
		}
		if hosts = ServerNames(old); len(hosts) == 0 {
			return nil, nil, time.Time{}, fmt.Errorf("%s names no host (give them)", certFile)
		}
	}
	if notAfter, err = ca.WriteServer(certFile, keyFile, hosts, valid); err != nil {
		return nil, nil, time.Time{}, err
	}
	return []string{certFile, keyFile}, hosts, notAfter, nil
}

// WriteServer writes a new server certificate for hosts, good for valid,
// and its key over certFile (keeping its mode; 0644 when new) and keyFile
// (0600): each file replaced whole, the key first, so a control plane
// that reads them at a handshake (ServerTLS) never serves a torn pair. It
// returns when the certificate expires.
func (ca *CA) WriteServer(certFile, keyFile string, hosts []string, valid time.Duration) (time.Time, error) {
	cert, key, err := ca.IssueServer(hosts, valid)
	if err != nil {
		return time.Time{}, err
	}
	leaf, err := x509.ParseCertificate(mustDER(cert))
	if err != nil {
		return time.Time{}, err
	}
	certPerm := os.FileMode(0o644)
	if fi, err := os.Stat(certFile); err == nil {
		certPerm = fi.Mode().Perm()
	}
	if err := WriteFile(keyFile, key, 0o600); err != nil {
		return time.Time{}, err
	}
	if err := WriteFile(certFile, cert, certPerm); err != nil {
		return time.Time{}, err
	}
	return leaf.NotAfter, nil
}

// ServerNames are the host names and IP addresses a server certificate
// covers.
func ServerNames(cert *x509.Certificate) []string {
	return append(slices.Clone(cert.DNSNames), ipStrings(cert.IPAddresses)...)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// mustDER is the DER of a PEM certificate certPEM made.
func mustDER(p []byte) []byte {
	b, _ := pem.Decode(p)
	return b.Bytes
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

func publicEqual(a, b any) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
