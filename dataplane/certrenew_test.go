package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/internal/pki"
	"github.com/sluice-lb/sluice/internal/syncbuf"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// fakeRenewals answers RenewCert as a control plane with ca would, for
// node id and valid from now(), after failing with each of fails in turn.
type fakeRenewals struct {
	ca    *pki.CA
	id    string
	valid time.Duration
	now   func() time.Time
	fails []error
	// sign, when set, replaces the request's public key with its own.
	sign *x509.CertificateRequest
	asks int
}

func (f *fakeRenewals) RenewCert(_ context.Context, req *sluicev1.RenewCertRequest, _ ...grpc.CallOption) (*sluicev1.IssueCertResponse, error) {
	f.asks++
	if len(f.fails) > 0 {
		err := f.fails[0]
		f.fails = f.fails[1:]
		return nil, err
	}
	csr := []byte(req.GetCsrPem())
	if f.sign != nil {
		csr = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: f.sign.Raw})
	}
	cert, _, err := f.ca.IssueNode(f.id, csr, f.valid, f.now())
	if err != nil {
		return nil, err
	}
	return &sluicev1.IssueCertResponse{CertPem: string(cert), CaPem: string(f.ca.PEM)}, nil
}

// renewFixture is a node certificate of n1, good for 30 minutes from a
// clock that only sleeps move, in files.
type renewFixture struct {
	ca                *pki.CA
	now               time.Time
	certFile, keyFile string
	log               *syncbuf.Buffer
}

func newRenewFixture(t *testing.T) *renewFixture {
	t.Helper()
	ca, _, err := pki.NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &renewFixture{ca: ca, now: time.Now().Truncate(time.Second), certFile: filepath.Join(dir, "n1.crt"), keyFile: filepath.Join(dir, "n1.key"), log: &syncbuf.Buffer{}}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NodeCSR("n1", key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := ca.IssueNode("n1", csr, 30*time.Minute, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.certFile, cert, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// renewer is a certRenewer of f's files asking client, whose sleeps move
// f's clock, recorded in waits, until the last is asked for.
func (f *renewFixture) renewer(client sluicev1.NodeCertServiceClient, waits *[]time.Duration, last int) *certRenewer {
	return &certRenewer{
		client: client, certFile: f.certFile, keyFile: f.keyFile,
		log: slog.New(slog.NewTextHandler(f.log, nil)),
		now: func() time.Time { return f.now },
		sleep: func(_ context.Context, d time.Duration) bool {
			*waits = append(*waits, d)
			f.now = f.now.Add(d)
			return len(*waits) < last
		},
	}
}

// TestCertRenewerSchedule: the node asks for a renewal when two thirds of
// its certificate's life has passed, after a failure a minute later and
// twice as long after each one more, and once renewed waits for the new
// certificate's turn; the renewed pair is in the files, the key 0600,
// the certificate with the mode it had.
func TestCertRenewerSchedule(t *testing.T) {
	f := newRenewFixture(t)
	first, _, err := pki.LoadCert(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	unavailable := status.Error(codes.Unavailable, "connection refused")
	client := &fakeRenewals{ca: f.ca, id: "n1", valid: 30 * time.Minute, now: func() time.Time { return f.now }, fails: []error{unavailable, unavailable}}
	var waits []time.Duration
	f.renewer(client, &waits, 4).run(context.Background())

	want := []time.Duration{20 * time.Minute, time.Minute, 2 * time.Minute, 20 * time.Minute}
	if !slices.Equal(waits, want) || client.asks != 3 {
		t.Errorf("waits %v with %d renewals asked for, want %v and 3", waits, client.asks, want)
	}
	renewed, _, err := pki.LoadCert(f.certFile)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || !renewed.NotAfter.Equal(first.NotAfter.Add(23*time.Minute)) {
		t.Errorf("the certificate file holds serial %v until %v; want a new one until %v", renewed.SerialNumber, renewed.NotAfter, first.NotAfter.Add(23*time.Minute))
	}
	if _, err := tls.LoadX509KeyPair(f.certFile, f.keyFile); err != nil {
		t.Errorf("the files after the renewal: %v", err)
	}
	for file, mode := range map[string]os.FileMode{f.keyFile: 0o600, f.certFile: 0o640} {
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %04o", file, err, mode)
		}
	}
	log := f.log.String()
	for _, line := range []string{
		`level=WARN msg="could not renew the node certificate; the node goes on with the one it has until it expires" cert=` + f.certFile + ` err="rpc error: code = Unavailable desc = connection refused" retry_in=1m0s`,
		`retry_in=2m0s`,
		`level=INFO msg="renewed the node certificate through the control plane: the next connection to a control plane presents it" cert=` + f.certFile + ` not_after=` + renewed.NotAfter.UTC().Format(time.RFC3339),
	} {
		if !strings.Contains(log, line) {
			t.Errorf("the log has no %s:\n%s", line, log)
		}
	}
}

// TestCertRenewerKeepsFilesOnBadAnswer: a certificate of another key, or
// of another node, is not written: the files keep the pair that works.
func TestCertRenewerKeepsFilesOnBadAnswer(t *testing.T) {
	otherKey, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	otherCSR, err := pki.NodeCSR("n1", otherKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(otherCSR)
	foreign, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client func(f *renewFixture) *fakeRenewals
		want   string
	}{
		{"another key", func(f *renewFixture) *fakeRenewals {
			return &fakeRenewals{ca: f.ca, id: "n1", valid: time.Hour, now: time.Now, sign: foreign}
		}, "the control plane's certificate: the certificate is not of the key its request was signed with"},
		{"another node", func(f *renewFixture) *fakeRenewals {
			return &fakeRenewals{ca: f.ca, id: "n2", valid: time.Hour, now: time.Now}
		}, `the control plane's certificate names node "n2", not n1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRenewFixture(t)
			certBefore, _ := os.ReadFile(f.certFile)
			keyBefore, _ := os.ReadFile(f.keyFile)
			var waits []time.Duration
			_, err := f.renewer(tc.client(f), &waits, 1).renew(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("renew: %v, want %q", err, tc.want)
			}
			certAfter, _ := os.ReadFile(f.certFile)
			keyAfter, _ := os.ReadFile(f.keyFile)
			if !bytes.Equal(certAfter, certBefore) || !bytes.Equal(keyAfter, keyBefore) {
				t.Error("the files changed")
			}
		})
	}
}

func TestRenewBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, renewBackoff(n))
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	if !slices.Equal(got, want) {
		t.Errorf("renewBackoff(1..8) = %v, want %v", got, want)
	}
}
