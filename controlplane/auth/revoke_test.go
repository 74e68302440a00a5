package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/auth"

	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestRevokedNode: an admin revokes a node; the node's open stream ends
// with why, and its certificate is refused for new streams and renewals,
// while a certificate issued to it afterwards is accepted.
func TestRevokedNode(t *testing.T) {
	f := setup(t)
	root := f.token(t, "root", sluicev1.Role_ROLE_ADMIN)
	oldCert, oldKey := f.nodeCert(t, f.ca, "edge-1")
	// The revocation counts whole seconds: revoke in a second after the
	// certificate's.
	leaf, _, err := pki.LoadCert(oldCert)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(leaf.NotBefore.Add(pki.Backdate + time.Second)))

	config := f.config(t, root)
	if _, err := config.Apply(ctx(t), &sluicev1.ApplyRequest{Snapshot: snap(t, false)}); err != nil {
		t.Fatal(err)
	}
	// stream subscribes as edge-1 with a certificate, and returns the
	// stream once the snapshot it got is ACKed, as a node does, or the
	// refusal.
	stream := func(certFile, keyFile string) (sluicev1.DiscoveryService_StreamSnapshotsClient, error) {
		s, err := sluicev1.NewDiscoveryServiceClient(f.dial(t, "", certFile, keyFile)).StreamSnapshots(ctx(t))
		if err != nil {
			return nil, err
		}
		if err := s.Send(&sluicev1.DiscoveryRequest{Node: &sluicev1.Node{Id: "edge-1"}}); err != nil {
			return nil, err
		}
		resp, err := s.Recv()
		if err != nil {
			return nil, err
		}
		return s, s.Send(&sluicev1.DiscoveryRequest{VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
	}
	open, err := stream(oldCert, oldKey)
	if err != nil {
		t.Fatalf("the node's stream before the revocation: %v", err)
	}
	resp, err := config.RevokeNode(ctx(t), &sluicev1.RevokeNodeRequest{NodeId: "edge-1"})
	if err != nil || !resp.GetChanged() {
		t.Fatalf("RevokeNode: %v, %v", resp, err)
	}
	want := "node edge-1's certificate was revoked at "
	_, err = open.Recv()
	wantStatus(t, "the open stream", err, codes.PermissionDenied, want)
	_, err = stream(oldCert, oldKey)
	wantStatus(t, "a new stream on the revoked certificate", err, codes.PermissionDenied, want)
	_, err = sluicev1.NewNodeCertServiceClient(f.dial(t, "", oldCert, oldKey)).RenewCert(ctx(t), renewRequest(t, "edge-1"))
	wantStatus(t, "renewal of the revoked certificate", err, codes.PermissionDenied, want)

	newCert, newKey := f.nodeCert(t, f.ca, "edge-1")
	if _, err := stream(newCert, newKey); err != nil {
		t.Errorf("a stream on a certificate issued after the revocation: %v", err)
	}
	listed, err := config.ListRevokedNodes(ctx(t), &sluicev1.ListRevokedNodesRequest{})
	if err != nil || len(listed.GetNodes()) != 1 || listed.GetNodes()[0].GetNodeId() != "edge-1" || listed.GetNodes()[0].GetVersion() != resp.GetVersion() {
		t.Errorf("ListRevokedNodes = %v, %v; want edge-1, revoked by version %d", listed, err, resp.GetVersion())
	}
	// A viewer may list them, not revoke.
	viewer := f.config(t, f.token(t, "watcher", sluicev1.Role_ROLE_VIEWER))
	if _, err := viewer.ListRevokedNodes(ctx(t), &sluicev1.ListRevokedNodesRequest{}); err != nil {
		t.Errorf("ListRevokedNodes as a viewer: %v", err)
	}
	_, err = viewer.RevokeNode(ctx(t), &sluicev1.RevokeNodeRequest{NodeId: "edge-2"})
	wantStatus(t, "RevokeNode as a viewer", err, codes.PermissionDenied, "RevokeNode needs role admin")
}

// TestRenewCheckedAgainstTheStore: a renewal is checked against the
// revocations of the store's current version too, so that a replica
// whose published version is older (etcd away, or not read yet) does not
// renew a certificate revoked since; one that cannot read the store does
// not renew at all.
func TestRenewCheckedAgainstTheStore(t *testing.T) {
	dir, ca := initCA(t, time.Hour)
	p := func(n string) string { return filepath.Join(dir, n) }
	tlsCfg, err := pki.ServerTLS(p("server.crt"), p("server.key"), p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	g := auth.New(auth.Config{TLS: tlsCfg, CA: ca})
	key, _, _ := pki.NewKey()
	csr, _ := pki.NodeCSR("n1", key)
	certPEM, _, err := ca.IssueNode("n1", csr, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseFor(certPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	// As the TLS handshake leaves it for the handler.
	asNode := peer.NewContext(ctx(t), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}})
	svc := auth.NewNodeCertService(g)
	later := timestamppb.New(time.Now().Add(time.Minute).Truncate(time.Second))
	for _, tc := range []struct {
		name   string
		stored func(context.Context) ([]*sluicev1.RevokedNode, error)
		code   codes.Code
		text   string
	}{
		{"none revoked", func(context.Context) ([]*sluicev1.RevokedNode, error) {
			return []*sluicev1.RevokedNode{{NodeId: "n2", RevokedAt: later}}, nil
		}, codes.OK, ""},
		{"revoked in the store", func(context.Context) ([]*sluicev1.RevokedNode, error) {
			return []*sluicev1.RevokedNode{{NodeId: "n1", RevokedAt: later}}, nil
		}, codes.PermissionDenied, "node n1's certificate was revoked at "},
		{"store away", func(context.Context) ([]*sluicev1.RevokedNode, error) {
			return nil, errors.New("etcd did not answer within 5s")
		}, codes.Unavailable, "the revoked nodes cannot be read from the store (etcd did not answer within 5s): the renewal waits for it"},
	} {
		g.ReadRevokedFrom(tc.stored)
		_, err := svc.RenewCert(asNode, renewRequest(t, "n1"))
		if tc.code == codes.OK {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantStatus(t, tc.name, err, tc.code, tc.text)
	}
}
