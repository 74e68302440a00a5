package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
)

const defaultTestTimeout = 30 * time.Second

// TestMain lets the tests run this binary's main as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_CP_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SLUICE_CP_RUN_MAIN=1")
	return cmd
}

func TestServesAndStopsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "data")
	cmd := command(ctx, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", dir, "--conns-ring", "50")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var httpAddr string
	listening := regexp.MustCompile(`msg=listening grpc=(\S+) http=(\S+)`)
	for lines.Scan() {
		if m := listening.FindStringSubmatch(lines.Text()); m != nil {
			httpAddr = m[2]
			break
		}
	}
	if httpAddr == "" {
		t.Fatalf("no listening line in the log (%v)", lines.Err())
	}
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}
	if fi, err := os.Stat(filepath.Join(dir, "sluice.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("store file: %v, %v", fi, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, rest.String())
	}
	if !strings.Contains(rest.String(), "msg=stopped") {
		t.Errorf("log after SIGTERM lacks msg=stopped:\n%s", rest.String())
	}
}

// TestEtcdUnreachable: a replica that cannot reach etcd at start says so and
// exits, rather than serving a configuration it cannot read; with an etcd
// user too, whose login the etcd client waits for.
func TestEtcdUnreachable(t *testing.T) {
	addr := loopback.RefusingAddr(t)
	for name, flags := range map[string][]string{
		"no user": nil,
		"a user":  {"--etcd-user", "sluice", "--etcd-password-file", writeTemp(t, "password", "s3cret\n", 0o600)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each waits 5 s
			ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
			defer cancel()
			out, err := command(ctx, append([]string{"--etcd", "http://" + addr, "--listen", "127.0.0.1:0", "--http", ""}, flags...)...).CombinedOutput()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
				t.Fatalf("--etcd to nothing: %v, want exit status 1\n%s", err, out)
			}
			// The etcd client only waits; a connection of the replica's own says why.
			if want := "etcd (http://" + addr + ") did not answer within 5s (http://" + addr + ": dial tcp " + addr + ": connect: connection refused)"; !strings.Contains(string(out), "cannot start") || !strings.Contains(string(out), want) {
				t.Errorf("--etcd to nothing: output does not say %q:\n%s", want, out)
			}
		})
	}
}

func TestBadFlagValues(t *testing.T) {
	pkiDir := filepath.Join(t.TempDir(), "pki")
	if code := initCA([]string{"--dir", pkiDir}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("init-ca: exit %d", code)
	}
	p := func(n string) string { return filepath.Join(pkiDir, n) }
	key, _ := os.ReadFile(p("ca.key"))
	openKey := writeTemp(t, "ca.key", string(key), 0o644)
	for _, tc := range []struct {
		flags []string
		says  string
	}{
		{[]string{"--keep-versions=0"}, "--keep-versions must be positive"},
		{[]string{"--conns-ring=-1"}, "--conns-ring must be positive"},
		{[]string{"--etcd= , "}, "--etcd names no endpoint"},
		{[]string{"--etcd=htp:/nonsense"}, `msg="bad --etcd endpoint" endpoint=htp:/nonsense err="want an etcd client URL, http://HOST:PORT, https://HOST:PORT, or HOST:PORT"`},
		{[]string{"--etcd=http://127.0.0.1:2379,etcd-2"}, "endpoint=etcd-2 err="},
		{[]string{"--etcd=http://127.0.0.1:2379,https://127.0.0.1:2380"}, `err="--etcd mixes plain http://127.0.0.1:2379 and TLS https://127.0.0.1:2380: give https:// for every endpoint of a TLS etcd"`},
		{[]string{"--etcd-ca=ca.pem"}, `err="--etcd-ca, --etcd-cert and --etcd-key are for the connections to --etcd, which is not given"`},
		{[]string{"--etcd=http://127.0.0.1:2379", "--etcd-ca=ca.pem"}, `err="--etcd-ca, --etcd-cert and --etcd-key are for TLS, but --etcd gives plain http://127.0.0.1:2379: give https://127.0.0.1:2379"`},
		{[]string{"--etcd=https://127.0.0.1:2379", "--etcd-cert=cp.pem"}, `err="--etcd-cert and --etcd-key go together: the client certificate and its key"`},
		{[]string{"--etcd=127.0.0.1:2379", "--etcd-ca=/nonexistent/ca.pem"}, `err="--etcd-ca: open /nonexistent/ca.pem: no such file or directory"`},
		{[]string{"--etcd=https://127.0.0.1:2379", "--etcd-cert=/nonexistent/cp.pem", "--etcd-key=/nonexistent/cp-key.pem"}, `err="--etcd-cert, --etcd-key: client certificate: open /nonexistent/cp.pem: no such file or directory"`},
		{[]string{"--etcd-user=sluice", "--etcd-password-file=pw"}, `err="--etcd-user and --etcd-password-file are for the connections to --etcd, which is not given"`},
		{[]string{"--etcd=http://127.0.0.1:2379", "--etcd-user=sluice"}, `err="--etcd-user needs --etcd-password-file: a file whose first line is the user's password"`},
		{[]string{"--etcd=http://127.0.0.1:2379", "--etcd-password-file=pw"}, `err="--etcd-password-file needs --etcd-user: the user whose password it holds"`},
		{[]string{"--etcd=http://127.0.0.1:2379", "--etcd-user=sluice", "--etcd-password-file=/nonexistent/pw"}, `err="--etcd-password-file: stat /nonexistent/pw: no such file or directory"`},
		{[]string{"--etcd=http://127.0.0.1:2379", "--etcd-user=sluice", "--etcd-password-file=" + writeTemp(t, "open", "s3cret\n", 0o644)}, "open is mode 0644: it must be readable by its owner only (chmod 600 "},
		{[]string{"--etcd=http://127.0.0.1:2379", "--etcd-user=sluice", "--etcd-password-file=" + writeTemp(t, "blank", "\nsecond line\n", 0o600)}, "blank has no password on its first line"},
		{[]string{"--etcd-prefix="}, "--etcd-prefix must not be empty"},
		{[]string{"--tls-cert=/nonexistent/server.crt", "--tls-key=" + p("server.key"), "--ca-cert=" + p("ca.crt")}, `msg="cannot start" err="--tls-cert/--tls-key/--ca-cert: server certificate: open /nonexistent/server.crt: no such file or directory"`},
		{[]string{"--tls-cert=" + p("server.crt"), "--tls-key=" + p("ca.key"), "--ca-cert=" + p("ca.crt")}, `msg="cannot start" err="--tls-cert/--tls-key/--ca-cert: server certificate ` + p("server.crt") + `, key ` + p("ca.key") + `: tls: private key does not match public key"`},
		{[]string{"--tls-cert=" + p("server.crt"), "--tls-key=" + p("server.key"), "--ca-cert=/nonexistent/ca.crt"}, `msg="cannot start" err="--tls-cert/--tls-key/--ca-cert: CA certificate: open /nonexistent/ca.crt: no such file or directory"`},
		{[]string{"--tls-cert=" + p("server.crt"), "--tls-key=" + p("server.key"), "--ca-cert=" + p("ca.crt"), "--ca-key=" + openKey}, `msg="cannot start" err="--ca-cert/--ca-key: CA key: ` + openKey + ` is mode 0644: it must be readable by its owner only (chmod 600 ` + openKey + `)"`},
		{[]string{"--tls-cert=" + p("server.crt"), "--tls-key=" + p("server.key"), "--ca-cert=" + p("ca.crt"), "--ca-key=" + p("server.key")}, `msg="cannot start" err="--ca-cert/--ca-key: ` + p("server.key") + ` is not the key of the CA in ` + p("ca.crt") + `"`},
		{[]string{"--tls-cert=" + p("server.crt"), "--tls-key=" + p("server.key"), "--ca-cert=" + p("server.crt"), "--ca-key=" + p("ca.key")}, `msg="cannot start" err="--ca-cert/--ca-key: ` + p("server.crt") + ` is not a CA certificate"`},
		{[]string{"--etcd=http://127.0.0.1:2379", "--data=somedir"}, `msg="--data and --etcd do not go together: with --etcd the configuration lives in etcd; leave out --data" data=somedir etcd=http://127.0.0.1:2379`},
		// Given, even as the default, it is refused all the same.
		{[]string{"--data=./sluice-data", "--etcd=127.0.0.1:2379"}, `msg="--data and --etcd do not go together`},
	} {
		flags := tc.flags
		if !slices.ContainsFunc(flags, func(f string) bool { return strings.HasPrefix(f, "--etcd=") || strings.HasPrefix(f, "--data=") }) {
			flags = append(flags, "--data", t.TempDir()) // should a case start, not in the package's directory
		}
		ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
		out, err := command(ctx, flags...).CombinedOutput()
		cancel()
		if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 2 {
			t.Errorf("%q: %v, want exit status 2", tc.flags, err)
		}
		if !strings.Contains(string(out), tc.says) {
			t.Errorf("%q: output lacks %q:\n%s", tc.flags, tc.says, out)
		}
		if strings.Contains(string(out), "pki: ") {
			t.Errorf("%q: output names the Go package pki:\n%s", tc.flags, out)
		}
	}
}

// writeTemp writes content to a file of the test's own, with mode perm.
func writeTemp(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is cut by the umask.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHelp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	out, err := command(ctx, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, flag := range []string{"-listen", "-http", "-data", "-etcd", "-conns-ring", "-keep-versions", "127.0.0.1:7070", "127.0.0.1:7071", "./sluice-data"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help lacks %q:\n%s", flag, out)
		}
	}
}

// TestSubcommandErrors: init-ca and mint-token say what went wrong with
// which file, in one line each, not the Go package it went wrong in.
func TestSubcommandErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if code := initCA([]string{"--dir", dir}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("init-ca: exit %d", code)
	}
	notDir := writeTemp(t, "file", "", 0o600)
	openKey := writeTemp(t, "open.key", strings.Repeat("ab", 32)+"\n", 0o644)
	noHostsDir := filepath.Join(t.TempDir(), "nohosts")
	newKey := filepath.Join(t.TempDir(), "new.key")
	missingKey := filepath.Join(t.TempDir(), "gone", "token.key")
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"init-ca", "--dir", dir}, 1, "sluice-cp init-ca: " + filepath.Join(dir, "ca.crt") + " exists; refusing to overwrite a CA (remove it, or choose another --dir)\n"},
		{[]string{"init-ca", "--dir", filepath.Join(notDir, "pki")}, 1, "sluice-cp init-ca: mkdir " + notDir + ": not a directory\n"},
		// In a directory that is not there (as root, /nonexistent may be).
		{[]string{"mint-token", "--token-key", missingKey}, 1, "sluice-cp mint-token: token key: open " + missingKey + ": no such file or directory\n"},
		{[]string{"mint-token", "--token-key", openKey}, 1,
			"sluice-cp mint-token: token key " + openKey + " is mode 0644: it must be readable by its owner only (chmod 600 " + openKey + ")\n"},
		{[]string{"mint-token", "--token-key", writeTemp(t, "token.key", strings.Repeat("ab", 32)+"\n", 0o600), "--name", "bad name!"}, 2,
			"sluice-cp mint-token: \"bad name!\" is not a valid token name: use letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 64 characters, and not \"anonymous\"\n"},
		{[]string{"mint-token", "--token-key", newKey, "--name", "Bad Name!"}, 2,
			"sluice-cp mint-token: \"Bad Name!\" is not a valid token name: use letters, digits, '.', '_', '@' and '-', starting with a letter or digit, at most 64 characters, and not \"anonymous\"\n"},
		{[]string{"mint-token", "--token-key", newKey, "--ttl", "500ms"}, 2,
			"sluice-cp mint-token: a token's ttl must be at least 1s, not 500ms\n"},
		{[]string{"init-ca", "--dir", noHostsDir, "--hosts", " , "}, 2,
			"sluice-cp init-ca: --hosts names no host: give the names and addresses that nodes and sluicectl dial (--cp)\n"},
		{[]string{"issue-server-cert"}, 2, "sluice-cp issue-server-cert: --dir is required\n"},
		{[]string{"issue-server-cert", "--dir", noHostsDir}, 1,
			"sluice-cp issue-server-cert: CA certificate: open " + filepath.Join(noHostsDir, "ca.crt") + ": no such file or directory\n"},
	} {
		var stdout, stderr strings.Builder
		code, _ := subcommand(tc.args, &stdout, &stderr)
		if got := stderr.String(); code != tc.code || got != tc.stderr {
			t.Errorf("%q: exit %d, stderr %q; want exit %d, %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
	}
	// What was refused left nothing behind.
	for _, p := range []string{newKey, noHostsDir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after refused commands: %v; want it not to exist", p, err)
		}
	}
}
