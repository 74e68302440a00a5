package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials([]byte("# operators\nadmin:s3cret\r\n\nops:pass:with:colons and spaces \n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user, pass string
		want       bool
	}{
		{"admin", "s3cret", true},
		{"ops", "pass:with:colons and spaces ", true},
		{"admin", "s3cret\r", false},
		{"admin", "S3cret", false},
		{"admin", "", false},
		{"ops", "s3cret", false},
		{"nobody", "s3cret", false},
		{"", "", false},
	} {
		if got := c.Allow(tt.user, tt.pass); got != tt.want {
			t.Errorf("Allow(%q, %q) = %v, want %v", tt.user, tt.pass, got, tt.want)
		}
	}
}

func TestParseCredentialsRefuses(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "no user:password line"},
		{"# only a comment\n\n", "no user:password line"},
		{"admin:x\njustaname\n", "line 2: want user:password, found no colon"},
		{":x", "line 1: the user name is empty"},
		{" admin:x", "line 1: the user name is empty or starts or ends with a space"},
		{"admin:", `line 1: user "admin" has an empty password`},
		{"admin:x\nadmin:y", `line 2: user "admin" appears twice`},
	} {
		_, err := ParseCredentials([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseCredentials(%q) = %v, want an error with %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok", "admin:s3cret\n", 0o600)
	if c, err := LoadCredentials(ok); err != nil || !c.Allow("admin", "s3cret") {
		t.Errorf("LoadCredentials(0600 file) = %v, %v; want admin allowed", c, err)
	}
	for _, tt := range []struct{ path, want string }{
		{write("group", "admin:s3cret\n", 0o640), "has mode 0640: group or others may read it; chmod 600 it"},
		{write("world", "admin:s3cret\n", 0o604), "has mode 0604"},
		{write("bad", "admin\n", 0o600), "bad: line 1: want user:password"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{dir, "is not a regular file"},
	} {
		_, err := LoadCredentials(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadCredentials(%s) = %v, want an error with %q", tt.path, err, tt.want)
		}
	}
}

// FuzzParseCredentials: any input is either refused or gives credentials
// that allow exactly what its lines say.
func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte("admin:s3cret\n"))
	f.Add([]byte("# c\r\na:b:c\r\n\nd: e \n"))
	f.Add([]byte(":\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCredentials(data)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
				continue
			}
			user, pass, _ := strings.Cut(line, ":")
			if !c.Allow(user, pass) {
				t.Errorf("line %q parsed but %q/%q not allowed", line, user, pass)
			}
			if c.Allow(user, pass+"x") {
				t.Errorf("line %q: a wrong password is allowed", line)
			}
		}
	})
}
