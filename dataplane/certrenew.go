package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// certRenewer renews the node's certificate through the control plane
// (NodeCertService.RenewCert) once two thirds of its life has passed
// (pki.RenewalTime), as kubelet rotates its client certificate. The new
// key is made here and never sent; it and the certificate are written over
// the files the node reads at each TLS handshake (pki.ClientTLS), the key
// first, each replaced whole, so the next connection to a control plane
// presents the renewed certificate. Connections already open keep the one
// they were made with: a control plane checks a certificate at the
// handshake alone.
type certRenewer struct {
	client            sluicev1.NodeCertServiceClient
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time
	// sleep waits d, and reports false when ctx ended first.
	sleep func(ctx context.Context, d time.Duration) bool
}

// A failed renewal is tried again after renewRetry, twice as long after
// each failure in a row, up to renewRetryMax: a control plane away, or
// one that cannot renew (no CA key), is asked again without flooding it
// or the log.
const (
	renewRetry    = time.Minute
	renewRetryMax = time.Hour
	renewTimeout  = 30 * time.Second
)

// renewBackoff is the wait after failures failed renewals in a row.
func renewBackoff(failures int) time.Duration {
	d := renewRetry
	for i := 1; i < failures && d < renewRetryMax; i++ {
		d *= 2
	}
	return min(d, renewRetryMax)
}

// run renews the certificate each time it is due, until ctx ends.
func (r *certRenewer) run(ctx context.Context) {
	failures, renewed := 0, false
	for {
		var wait time.Duration
		if cert, _, err := pki.LoadCert(r.certFile); err == nil {
			wait = pki.RenewalTime(cert).Sub(r.now())
			if renewed {
				// One due at once (from a control plane whose clock is
				// behind) waits a minute, or a third of its life when
				// that is shorter, all the same.
				wait = max(wait, min(renewRetry, pki.Validity(cert)/3))
			}
		}
		if failures > 0 {
			wait = max(wait, renewBackoff(failures))
		}
		if wait > 0 && !r.sleep(ctx, wait) {
			return
		}
		notAfter, err := r.renew(ctx)
		if ctx.Err() != nil {
			return
		}
		if renewed = err == nil; err != nil {
			failures++
			r.log.Warn("could not renew the node certificate; the node goes on with the one it has until it expires",
				"cert", r.certFile, "err", err, "retry_in", renewBackoff(failures))
			continue
		}
		failures = 0
		r.log.Info("renewed the node certificate through the control plane: the next connection to a control plane presents it",
			"cert", r.certFile, "not_after", notAfter.UTC().Format(time.RFC3339))
	}
}

// renew makes a new key, has the control plane sign its certificate for
// the node the current one names, and writes both over the files. It
// returns the new certificate's NotAfter.
func (r *certRenewer) renew(ctx context.Context) (time.Time, error) {
	old, _, err := pki.LoadCert(r.certFile)
	if err != nil {
		return time.Time{}, err // "open FILE: …"
	}
	id, err := pki.NodeID(old)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", r.certFile, err)
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return time.Time{}, err
	}
	csr, err := pki.NodeCSR(id, key)
	if err != nil {
		return time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	resp, err := r.client.RenewCert(ctx, &sluicev1.RenewCertRequest{CsrPem: string(csr)})
	if err != nil {
		return time.Time{}, err
	}
	cert, err := pki.ParseFor([]byte(resp.GetCertPem()), key)
	if err != nil {
		return time.Time{}, fmt.Errorf("the control plane's certificate: %w", err)
	}
	if got, err := pki.NodeID(cert); err != nil {
		return time.Time{}, fmt.Errorf("the control plane's certificate: %w", err)
	} else if got != id {
		return time.Time{}, fmt.Errorf("the control plane's certificate names node %q, not %s", got, id)
	}
	certPerm := os.FileMode(0o644)
	if st, err := os.Stat(r.certFile); err == nil {
		certPerm = st.Mode().Perm()
	}
	oldKey, err := os.ReadFile(r.keyFile)
	if err != nil {
		return time.Time{}, err
	}
	if err := pki.WriteFile(r.keyFile, keyPEM, 0o600); err != nil {
		return time.Time{}, err
	}
	if err := pki.WriteFile(r.certFile, []byte(resp.GetCertPem()), certPerm); err != nil {
		// The old key goes back beside the old certificate, else a
		// restart would find a pair that does not match.
		if rerr := pki.WriteFile(r.keyFile, oldKey, 0o600); rerr != nil {
			return time.Time{}, errors.Join(err, rerr, fmt.Errorf("%s holds a key its certificate %s is not of: the node needs a new certificate before a restart ('sluicectl cert issue')", r.keyFile, r.certFile))
		}
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}
