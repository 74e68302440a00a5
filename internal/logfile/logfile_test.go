package logfile

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReopenAfterRotation: lines written after the file was moved away and
// reopened land in a new file at the path, created with the file's mode;
// the moved file keeps what came before.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := Open(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("one\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("two\n")) // not reopened yet: follows the moved file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	if got := read(t, path+".1"); got != "one\ntwo\n" {
		t.Errorf("moved file holds %q, want one, two", got)
	}
	if got := read(t, path); got != "three\n" {
		t.Errorf("new file holds %q, want three", got)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("new file: %v, %v; want mode 0600", st.Mode(), err)
	}
}

// TestReopenFailureKeepsWriting: when the path cannot be opened again (its
// directory is gone), Reopen says so and the lines go on to the old file.
func TestReopenFailureKeepsWriting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	os.Mkdir(dir, 0o700)
	path := filepath.Join(dir, "audit.log")
	f, err := Open(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	moved := dir + ".old"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err == nil {
		t.Fatal("Reopen with the directory gone: no error")
	}
	if _, err := f.Write([]byte("still\n")); err != nil {
		t.Fatalf("write after a failed reopen: %v", err)
	}
	if got := read(t, filepath.Join(moved, "audit.log")); got != "still\n" {
		t.Errorf("old file holds %q, want still", got)
	}
}

// TestHangupReopens: SIGHUP to the process reopens the files, and the
// process lives on; after stop, ReopenOnHangup no longer listens.
func TestHangupReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := Open(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := ReopenOnHangup(slog.New(slog.DiscardHandler), f)
	defer stop()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Once the new file is there, every write goes to it (Reopen).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not create a new file at the path")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.Write([]byte("after\n"))
	if got := read(t, path); got != "after\n" {
		t.Errorf("new file holds %q, want after", got)
	}
}
