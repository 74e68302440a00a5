package auth

import (
	"errors"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// FuzzVerify feeds Verify arbitrary tokens: it must not panic, and
// whatever it accepts must carry sane claims. Almost every mutation breaks
// the MAC, so this explores the framing (prefix, parts, base64).
func FuzzVerify(f *testing.F) {
	k := testKey(f, 'a')
	good, _, _ := k.Mint("alice", sluicev1.Role_ROLE_OPERATOR, t0, time.Hour)
	expired, _, _ := k.Mint("bob", sluicev1.Role_ROLE_VIEWER, t0.Add(-2*time.Hour), time.Hour)
	for _, s := range []string{good, expired, "", "sluice1.", "sluice1..", "sluice1.e30.", good + ".", good[:20]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := k.Verify(token, t0)
		checkVerified(t, c, err)
	})
}

// FuzzVerifySigned signs arbitrary payloads with the key, which explores
// what Verify does after the MAC holds: the JSON and the claims' checks.
func FuzzVerifySigned(f *testing.F) {
	k := testKey(f, 'a')
	for _, s := range []string{
		`{"n":"alice","r":"admin","iat":1772366400,"exp":1772370000,"id":"x"}`,
		`{"n":"alice","r":"admin","iat":1,"exp":2}`,
		`{"n":"","r":"","iat":0,"exp":0,"id":""}`,
		`{"n":"a","r":"viewer","iat":1,"exp":99999999999,"id":"x","z":1}`,
		`[]`, `null`, `{"n":1}`, `{"exp":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := k.Verify(signed(k, string(payload)), t0)
		checkVerified(t, c, err)
	})
}

func checkVerified(t *testing.T, c Claims, err error) {
	t.Helper()
	var exp *ExpiredError
	switch {
	case err == nil || errors.As(err, &exp):
		if !namePattern.MatchString(c.Name) || c.RoleOf() == sluicev1.Role_ROLE_UNSPECIFIED || c.Expires <= c.Issued {
			t.Fatalf("accepted claims %+v", c)
		}
		if err == nil && t0.Unix() >= c.Expires {
			t.Fatalf("accepted a token that expired at %v", c.ExpiresAt())
		}
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrSignature):
		if c != (Claims{}) {
			t.Fatalf("claims %+v with error %v", c, err)
		}
	default:
		t.Fatalf("unexpected error %v", err)
	}
}
