package node

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// upstreamTLS is the TLS client configuration a cluster's endpoints are
// dialed with (upstream.Endpoint.SetTLS), and its health checks.
type upstreamTLS struct {
	cfg *tls.Config
	ca  []byte // the CA PEM it verifies with: ca_pem, or ca_file as read
}

// compileUpstreamTLS builds the TLS client configuration of cluster spec,
// or returns nil for a cluster whose endpoints speak plain TCP. A ca_file
// is read now, at apply: a missing or bad file fails the apply (a NACK
// naming it), and a renewed file takes effect with the next apply.
//
// prev is the running cluster of the same name, if any. When its tls block
// and CA are the same, its configuration is kept, the same pointer: the
// endpoints keep their pooled connections and TLS sessions and the health
// checks are not restarted.
func compileUpstreamTLS(spec *sluicev1.Cluster, prev *cluster) (*upstreamTLS, error) {
	t := spec.GetTls()
	if t == nil {
		return nil, nil
	}
	ca := []byte(t.GetCaPem())
	if f := t.GetCaFile(); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		ca = b
	}
	if prev != nil && prev.tls != nil && proto.Equal(prev.spec.GetTls(), t) && bytes.Equal(prev.tls.ca, ca) {
		return prev.tls, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.GetServerName(),
		InsecureSkipVerify: t.GetInsecureSkipVerify(),
	}
	if t.GetMinVersion() == sluicev1.TlsVersion_TLS_VERSION_TLS_1_3 {
		cfg.MinVersion = tls.VersionTLS13
	}
	if len(ca) > 0 {
		pool, err := snapshot.ParseCAs(ca)
		if err != nil {
			field := "tls.ca_pem"
			if t.GetCaFile() != "" {
				field = "tls.ca_file " + t.GetCaFile()
			}
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		cfg.RootCAs = pool
	}
	return &upstreamTLS{cfg: cfg, ca: ca}, nil
}

// config is the *tls.Config of u; nil for a plain cluster.
func (u *upstreamTLS) config() *tls.Config {
	if u == nil {
		return nil
	}
	return u.cfg
}
