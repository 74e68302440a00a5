package auth_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// renewRequest is a certificate request of a new key, naming id.
func renewRequest(t *testing.T, id string) *sluicev1.RenewCertRequest {
	t.Helper()
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NodeCSR(id, key)
	if err != nil {
		t.Fatal(err)
	}
	return &sluicev1.RenewCertRequest{CsrPem: string(csr)}
}

// TestRenewCert: a node renews its own certificate with its current one,
// for the node that one names whatever its request says, good for as
// long; what is not a node certificate, and a control plane that cannot
// or will not renew, are refused with why; each attempt is audited.
func TestRenewCert(t *testing.T) {
	f := setup(t)
	certFile, keyFile := f.nodeCert(t, f.ca, "edge-1")
	node := sluicev1.NewNodeCertServiceClient(f.dial(t, "", certFile, keyFile))

	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NodeCSR("someone-else", key) // the names of a request are not used
	if err != nil {
		t.Fatal(err)
	}
	resp, err := node.RenewCert(ctx(t), &sluicev1.RenewCertRequest{CsrPem: string(csr)})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseFor([]byte(resp.GetCertPem()), key)
	if err != nil {
		t.Fatalf("the renewed certificate: %v", err)
	}
	if id, err := pki.NodeID(cert); id != "edge-1" || err != nil {
		t.Errorf("the renewed certificate names %q (%v), want edge-1, the caller's", id, err)
	}
	if d := pki.Validity(cert); d < time.Hour-time.Second || d > time.Hour+time.Second {
		t.Errorf("the renewed certificate is good for %v, want an hour, as the caller's", d)
	}
	if !resp.GetNotAfter().AsTime().Equal(cert.NotAfter) || resp.GetCaPem() != string(f.ca.PEM) {
		t.Errorf("not_after %v, CA %q; want the certificate's %v and the control plane's CA", resp.GetNotAfter().AsTime(), resp.GetCaPem(), cert.NotAfter)
	}

	_, err = node.RenewCert(ctx(t), &sluicev1.RenewCertRequest{CsrPem: "garbage"})
	wantStatus(t, "a request that is not PEM", err, codes.InvalidArgument, "not a PEM CERTIFICATE REQUEST")
	_, err = node.RenewCert(ctx(t), &sluicev1.RenewCertRequest{})
	wantStatus(t, "no request", err, codes.InvalidArgument, "invalid request")

	// An operator's token is no node certificate.
	root := f.token(t, "root", sluicev1.Role_ROLE_ADMIN)
	_, err = sluicev1.NewNodeCertServiceClient(f.dial(t, root, "", "")).RenewCert(ctx(t), renewRequest(t, "edge-1"))
	wantStatus(t, "a token, no certificate", err, codes.Unauthenticated, "needs a node certificate signed by the control plane's CA")

	// A certificate that ends with the CA cannot be renewed to outlive it.
	last, lastKey := f.nodeCertFor(t, "edge-2", 100*365*24*time.Hour)
	_, err = sluicev1.NewNodeCertServiceClient(f.dial(t, "", last, lastKey)).RenewCert(ctx(t), renewRequest(t, "edge-2"))
	wantStatus(t, "a certificate that ends with the CA", err, codes.FailedPrecondition, "the CA expires at "+f.ca.Cert.NotAfter.UTC().Format(time.RFC3339)+", when this certificate does")

	var got []string
	for _, e := range f.auditLines(t) {
		if e.Method == sluicev1.NodeCertService_RenewCert_FullMethodName {
			got = append(got, e.Identity+" "+e.Node+" "+e.Target+" "+e.Outcome)
		}
	}
	want := []string{"edge-1 edge-1 node edge-1 ok", "edge-1 edge-1 node edge-1 InvalidArgument", "edge-1 edge-1 node edge-1 InvalidArgument", "edge-2 edge-2 node edge-2 FailedPrecondition"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit of the renewals:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(f.log.String(), `msg="node certificate renewed" node=edge-1`) {
		t.Errorf("the renewal is not logged:\n%s", f.log.String())
	}
}

// TestRenewCertRefused: without the CA's key, or with renewal turned
// off, a node is told to get a certificate from an admin.
func TestRenewCertRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*auth.Config)
		want string
	}{
		{"no CA key", func(c *auth.Config) { c.CA = nil }, "this control plane has no CA key (sluice-cp --ca-key): it cannot renew node certificates; issue one with 'sluicectl cert issue'"},
		{"renewal off", func(c *auth.Config) { c.NoRenewal = true }, "this control plane does not renew node certificates (sluice-cp --node-cert-renewal=false); issue one with 'sluicectl cert issue'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setupWith(t, tc.edit)
			certFile, keyFile := f.nodeCert(t, f.ca, "edge-1")
			_, err := sluicev1.NewNodeCertServiceClient(f.dial(t, "", certFile, keyFile)).RenewCert(ctx(t), renewRequest(t, "edge-1"))
			wantStatus(t, tc.name, err, codes.FailedPrecondition, tc.want)
		})
	}
	// Without TLS no caller has a certificate.
	_, err := auth.NewNodeCertService(nil).RenewCert(ctx(t), renewRequest(t, "edge-1"))
	wantStatus(t, "plain gRPC", err, codes.FailedPrecondition, "this control plane speaks plain gRPC: there is no node certificate to renew")
}
