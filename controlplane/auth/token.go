package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// A token is
//
//	sluice1.PAYLOAD.MAC
//
// where PAYLOAD is the base64url (unpadded) JSON of Claims and MAC the
// base64url HMAC-SHA256, under the token key, of "sluice1.PAYLOAD". The
// control plane stores no tokens: every replica that reads the same key
// file verifies the same tokens, and rotating the key revokes them all.
// The MAC is checked before the payload is decoded, so nothing an
// attacker wrote is parsed.
const tokenPrefix = "sluice1."

// maxTokenLen bounds what Verify looks at; real tokens are ~200 bytes.
const maxTokenLen = 2048

// KeySize is the size of a token key, in bytes.
const KeySize = 32

// namePattern is what a token's name may be (CreateTokenRequest.name).
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Claims are what a token says about its holder.
type Claims struct {
	Name    string `json:"n"`
	Role    string `json:"r"`
	Issued  int64  `json:"iat"` // Unix seconds
	Expires int64  `json:"exp"` // Unix seconds; the token is refused from then on
	ID      string `json:"id"`  // random, tells two tokens of one name apart in logs
}

// RoleOf returns the role the claims name.
func (c Claims) RoleOf() sluicev1.Role { return ParseRole(c.Role) }

// ExpiresAt returns when the token stops being accepted.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expires, 0).UTC() }

// Errors of Verify. An expired token is an *ExpiredError.
var (
	ErrMalformed = errors.New("malformed token")
	ErrSignature = errors.New("token signature does not verify: not made with this control plane's token key")
)

// ExpiredError is a token whose signature holds but whose time is up.
type ExpiredError struct {
	Claims Claims
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("token %q expired at %s", e.Claims.Name, e.Claims.ExpiresAt().Format(time.RFC3339))
}

// Key signs and verifies tokens.
type Key struct {
	secret []byte
}

// NewKey returns a key over secret, which must be at least KeySize bytes.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) < KeySize {
		return nil, fmt.Errorf("a token key needs at least %d bytes, not %d", KeySize, len(secret))
	}
	return &Key{secret: bytes.Clone(secret)}, nil
}

// ID tells the key from others without giving it away: the start of an
// HMAC of a fixed text under it, in hex. Replicas compare theirs (a
// token made through one is refused by another whose key differs).
func (k *Key) ID() string {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte("sluice token key id"))
	return hex.EncodeToString(m.Sum(nil)[:6])
}

// LoadKey reads a token key file: the key in hex on one line. The file
// must be readable by its owner only.
func LoadKey(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token key %s is mode %04o: it must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("token key %s is not hex: %w", path, err)
	}
	k, err := NewKey(secret)
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateKey reads the token key at path, or, when there is no file
// there, creates it (mode 0600) with a new random key. created says which.
func LoadOrCreateKey(path string) (k *Key, created bool, err error) {
	secret := make([]byte, KeySize)
	rand.Read(secret)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, os.ErrExist):
		k, err := LoadKey(path)
		return k, false, err
	case err != nil:
		return nil, false, fmt.Errorf("token key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(secret) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("token key: %w", err)
	}
	k, err = NewKey(secret)
	return k, true, err
}

// checkName refuses what is not a token name, saying what one is.
func checkName(name string) error {
	if !namePattern.MatchString(name) || name == "anonymous" {
		return fmt.Errorf("%q is not a valid token name: use letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 64 characters, and not \"anonymous\"", name)
	}
	return nil
}

// CheckMint says why Mint would refuse name, role and ttl, or nil: for a
// caller that has work to do before it can mint (mint-token makes the key).
func CheckMint(name string, role sluicev1.Role, ttl time.Duration) error {
	if err := checkName(name); err != nil {
		return err
	}
	if ParseRole(RoleName(role)) == sluicev1.Role_ROLE_UNSPECIFIED {
		return fmt.Errorf("no such role %v", role)
	}
	if ttl < time.Second {
		// Claims count whole seconds: a shorter ttl could expire as it is
		// issued, which Verify takes for a malformed token.
		return fmt.Errorf("a token's ttl must be at least 1s, not %v", ttl)
	}
	return nil
}

// Mint makes a token for name with role, accepted from now for ttl.
func (k *Key) Mint(name string, role sluicev1.Role, now time.Time, ttl time.Duration) (string, Claims, error) {
	if err := CheckMint(name, role, ttl); err != nil {
		return "", Claims{}, err
	}
	rs := RoleName(role)
	var id [6]byte
	rand.Read(id[:])
	c := Claims{Name: name, Role: rs, Issued: now.Unix(), Expires: now.Add(ttl).Unix(), ID: hex.EncodeToString(id[:])}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", Claims{}, err
	}
	signed := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(k.mac(signed)), c, nil
}

// Verify checks token's signature and claims, and that it has not
// expired at now. It returns its claims, or ErrMalformed or ErrSignature
// (wrapped, with why), or an *ExpiredError.
func (k *Key) Verify(token string, now time.Time) (Claims, error) {
	c, err := k.parse(token)
	if err != nil {
		return Claims{}, err
	}
	if now.Unix() >= c.Expires {
		return c, &ExpiredError{Claims: c}
	}
	return c, nil
}

func (k *Key) parse(token string) (Claims, error) {
	malformed := func(why string) (Claims, error) { return Claims{}, fmt.Errorf("%w: %s", ErrMalformed, why) }
	if len(token) > maxTokenLen {
		return malformed(fmt.Sprintf("longer than %d bytes", maxTokenLen))
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return malformed("not a Sluice token (those start with " + tokenPrefix + ")")
	}
	payload64, mac64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(mac64, ".") {
		return malformed("not three dot-separated parts")
	}
	mac, err := base64.RawURLEncoding.DecodeString(mac64)
	if err != nil || len(mac) != sha256.Size {
		return malformed("bad signature encoding")
	}
	if !hmac.Equal(mac, k.mac(token[:len(tokenPrefix)+len(payload64)])) {
		return Claims{}, ErrSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(payload64)
	if err != nil {
		return malformed("bad payload encoding")
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return malformed("bad payload")
	}
	switch {
	case !namePattern.MatchString(c.Name):
		return malformed("bad name")
	case ParseRole(c.Role) == sluicev1.Role_ROLE_UNSPECIFIED:
		return malformed("unknown role " + fmt.Sprintf("%q", c.Role))
	case c.Expires <= c.Issued:
		return malformed("expires before it was issued")
	}
	return c, nil
}

func (k *Key) mac(signed string) []byte {
	h := hmac.New(sha256.New, k.secret)
	h.Write([]byte(signed))
	return h.Sum(nil)
}

// RoleName is a role's name in tokens, flags and the audit log: "viewer",
// "operator" or "admin" ("" for none).
func RoleName(r sluicev1.Role) string {
	switch r {
	case sluicev1.Role_ROLE_VIEWER:
		return "viewer"
	case sluicev1.Role_ROLE_OPERATOR:
		return "operator"
	case sluicev1.Role_ROLE_ADMIN:
		return "admin"
	}
	return ""
}

// ParseRole is RoleName's inverse; it returns ROLE_UNSPECIFIED for
// anything else.
func ParseRole(s string) sluicev1.Role {
	switch s {
	case "viewer":
		return sluicev1.Role_ROLE_VIEWER
	case "operator":
		return sluicev1.Role_ROLE_OPERATOR
	case "admin":
		return sluicev1.Role_ROLE_ADMIN
	}
	return sluicev1.Role_ROLE_UNSPECIFIED
}
