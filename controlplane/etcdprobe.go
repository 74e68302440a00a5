package controlplane

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// probeWait bounds each step of probeEtcd: the connect, the handshake,
// and the wait for an alert after it.
const probeWait = 2 * time.Second

// probeEtcd says why etcd at endpoints did not answer a replica that
// starts, where a connection of its own tells more than the etcd client,
// which only waits: the endpoint refuses connections, a plain endpoint
// speaks TLS, or a TLS one's certificate does not verify, or it refuses
// this replica's (cfg: the replica's TLS to etcd, nil for plain). Empty
// when nothing it tries fails, such as etcd up but without a leader.
// The endpoints are tried side by side.
func probeEtcd(endpoints []string, cfg *tls.Config) string {
	found := make([]string, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			addr := ep
			if _, rest, ok := strings.Cut(ep, "://"); ok {
				addr = strings.TrimSuffix(rest, "/")
			}
			if s := probeEndpoint(addr, cfg); s != "" {
				found[i] = ep + ": " + s
			}
		})
	}
	wg.Wait()
	return strings.Join(slices.DeleteFunc(found, func(s string) bool { return s == "" }), "; ")
}

func probeEndpoint(addr string, cfg *tls.Config) string {
	conn, err := net.DialTimeout("tcp", addr, probeWait)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(probeWait))
	if cfg == nil {
		// Whether it speaks TLS: nothing of it is verified, and nothing is
		// sent past the handshake.
		if tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}).Handshake() == nil {
			return "it speaks TLS: give https://" + addr + ", and --etcd-ca with the authority that signed its certificate"
		}
		return ""
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	cfg.NextProtos = []string{"h2"} // as gRPC asks, which etcd requires
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "no TLS handshake within " + probeWait.String()
		}
		return "TLS: " + err.Error()
	}
	// A server that wants a client certificate refuses a missing or
	// unknown one with an alert after the handshake (TLS 1.3); etcd sends
	// nothing else before the client speaks.
	tc.SetReadDeadline(time.Now().Add(probeWait / 4))
	if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Sprintf("TLS: %v", err)
	}
	return ""
}
