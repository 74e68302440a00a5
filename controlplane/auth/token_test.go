package auth

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testKey(t testing.TB, b byte) *Key {
	t.Helper()
	k, err := NewKey([]byte(strings.Repeat(string(rune(b)), KeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed makes a token of payload under k, as Mint would sign it, so
// tests can hand Verify well-signed payloads Mint would never write.
func signed(k *Key, payload string) string {
	s := tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return s + "." + base64.RawURLEncoding.EncodeToString(k.mac(s))
}

func TestMintVerify(t *testing.T) {
	k := testKey(t, 'a')
	tok, c, err := k.Mint("ci-bot", sluicev1.Role_ROLE_OPERATOR, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "sluice1.") {
		t.Errorf("token %q does not start with sluice1.", tok)
	}
	got, err := k.Verify(tok, t0.Add(59*time.Minute))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got != c || got.Name != "ci-bot" || got.RoleOf() != sluicev1.Role_ROLE_OPERATOR || !got.ExpiresAt().Equal(t0.Add(time.Hour)) {
		t.Errorf("claims %+v, want %+v (ci-bot, operator, expiring %v)", got, c, t0.Add(time.Hour))
	}
	// Two tokens of one name differ.
	tok2, _, _ := k.Mint("ci-bot", sluicev1.Role_ROLE_OPERATOR, t0, time.Hour)
	if tok2 == tok {
		t.Error("two tokens minted alike are equal")
	}
}

func TestVerifyExpired(t *testing.T) {
	k := testKey(t, 'a')
	tok, _, _ := k.Mint("alice", sluicev1.Role_ROLE_ADMIN, t0, time.Hour)
	_, err := k.Verify(tok, t0.Add(time.Hour))
	var exp *ExpiredError
	if !errors.As(err, &exp) {
		t.Fatalf("Verify at expiry: %v, want an ExpiredError", err)
	}
	if want := `token "alice" expired at 2026-03-01T13:00:00Z`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestVerifyRefuses(t *testing.T) {
	k := testKey(t, 'a')
	good, _, _ := k.Mint("alice", sluicev1.Role_ROLE_VIEWER, t0, time.Hour)
	payload, mac, _ := strings.Cut(strings.TrimPrefix(good, tokenPrefix), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	// The viewer's payload made admin, with the viewer's MAC.
	forged := tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"viewer"`, `"admin"`, 1))) + "." + mac
	other, _, _ := testKey(t, 'b').Mint("alice", sluicev1.Role_ROLE_VIEWER, t0, time.Hour)

	for _, tc := range []struct {
		name, token string
		want        error
		text        string
	}{
		{"empty", "", ErrMalformed, "not a Sluice token"},
		{"other scheme", "eyJhbGciOi.x.y", ErrMalformed, "not a Sluice token"},
		{"no mac", tokenPrefix + payload, ErrMalformed, "not three dot-separated parts"},
		{"four parts", good + ".x", ErrMalformed, "not three dot-separated parts"},
		{"mac not base64", tokenPrefix + payload + ".!!!", ErrMalformed, "bad signature encoding"},
		{"mac too short", tokenPrefix + payload + ".AAAA", ErrMalformed, "bad signature encoding"},
		{"too long", tokenPrefix + strings.Repeat("A", maxTokenLen), ErrMalformed, "longer than"},
		{"another key", other, ErrSignature, "does not verify"},
		{"forged role", forged, ErrSignature, "does not verify"},
		{"truncated", good[:len(good)-2], ErrMalformed, ""},
		{"signed garbage", signed(k, "not json"), ErrMalformed, "bad payload"},
		{"unknown field", signed(k, `{"n":"a","r":"admin","iat":1,"exp":2,"id":"x","admin":true}`), ErrMalformed, "bad payload"},
		{"trailing data", signed(k, `{"n":"a","r":"admin","iat":1,"exp":2,"id":"x"}{}`), ErrMalformed, "bad payload"},
		{"unknown role", signed(k, `{"n":"a","r":"root","iat":1,"exp":9999999999,"id":"x"}`), ErrMalformed, `unknown role "root"`},
		{"bad name", signed(k, `{"n":"a b","r":"admin","iat":1,"exp":9999999999,"id":"x"}`), ErrMalformed, "bad name"},
		{"backwards", signed(k, `{"n":"a","r":"admin","iat":5,"exp":5,"id":"x"}`), ErrMalformed, "expires before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := k.Verify(tc.token, t0)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Verify: %v, want %v containing %q", err, tc.want, tc.text)
			}
			if c != (Claims{}) {
				t.Errorf("claims %+v returned with the error", c)
			}
		})
	}
}

func TestMintRefuses(t *testing.T) {
	k := testKey(t, 'a')
	for _, tc := range []struct {
		name string
		role sluicev1.Role
		ttl  time.Duration
	}{
		{"", sluicev1.Role_ROLE_ADMIN, time.Hour},
		{"has space", sluicev1.Role_ROLE_ADMIN, time.Hour},
		{"anonymous", sluicev1.Role_ROLE_ADMIN, time.Hour},
		{"ok", sluicev1.Role_ROLE_UNSPECIFIED, time.Hour},
		{"ok", sluicev1.Role(9), time.Hour},
		{"ok", sluicev1.Role_ROLE_ADMIN, 0},
		{"ok", sluicev1.Role_ROLE_ADMIN, 999 * time.Millisecond},
	} {
		if tok, _, err := k.Mint(tc.name, tc.role, t0, tc.ttl); err == nil {
			t.Errorf("Mint(%q, %v, %v) = %q, want an error", tc.name, tc.role, tc.ttl, tok)
		}
	}
}

// The shortest ttl Mint takes gives a token Verify accepts, whatever the
// fraction of the second it is minted in, until it expires.
func TestMintShortestTTL(t *testing.T) {
	k := testKey(t, 'a')
	for _, frac := range []time.Duration{0, 500 * time.Millisecond, 999 * time.Millisecond} {
		now := t0.Add(frac)
		tok, _, err := k.Mint("ci", sluicev1.Role_ROLE_VIEWER, now, time.Second)
		if err != nil {
			t.Fatalf("Mint at +%v: %v", frac, err)
		}
		if _, err := k.Verify(tok, now); err != nil {
			t.Errorf("a 1s token minted at +%v refused at once: %v", frac, err)
		}
		var expired *ExpiredError
		if _, err := k.Verify(tok, now.Add(2*time.Second)); !errors.As(err, &expired) {
			t.Errorf("a 1s token minted at +%v, 2s later: %v, want expired", frac, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.key")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateKey: created %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	// A second replica reading the same file verifies the first's tokens.
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateKey: created %v, %v", created, err)
	}
	tok, _, _ := k1.Mint("alice", sluicev1.Role_ROLE_ADMIN, t0, time.Hour)
	if _, err := k2.Verify(tok, t0); err != nil {
		t.Errorf("a token of the first key, verified by the reloaded one: %v", err)
	}

	os.Chmod(path, 0o644)
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadKey of a 0644 file: %v, want a refusal saying chmod 600", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("abcd\n"), 0o600)
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Errorf("LoadKey of a short key: %v", err)
	}
}
