// Package logfile is a log file that can be reopened at its path, for log
// rotation: once logrotate (or mv) has renamed the file, SIGHUP makes the
// process open a new one at the path and write there, as HAProxy's and
// nginx's users expect of a daemon's logs. Without it the process would go
// on appending to the renamed file, wherever it went, for good.
package logfile

import (
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// File appends to the file at a path. Its methods may be called from any
// goroutine.
type File struct {
	path string
	perm os.FileMode

	mu sync.Mutex
	f  *os.File
}

// Open opens path for appending, creating it with perm.
func Open(path string, perm os.FileMode) (*File, error) {
	f := &File{path: path, perm: perm}
	var err error
	if f.f, err = f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// open opens the file's path for appending, creating it with its perm.
func (f *File) open() (*os.File, error) {
	return os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, f.perm)
}

// Path is the path the file was opened at.
func (f *File) Path() string { return f.path }

// Write appends p to the file open now.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Write(p)
}

// Reopen opens the path again, creating the file when it was moved away,
// and writes there from then on. When the path cannot be opened the
// writes go on to the file open before, and the error says why.
//
// It opens the path with writes held, so that once the new file is
// there, whatever is written goes to it (a rotation script that saw it
// appear finds every later line in it).
func (f *File) Reopen() error {
	f.mu.Lock()
	nf, err := f.open()
	if err != nil {
		f.mu.Unlock()
		return err
	}
	old := f.f
	f.f = nf
	f.mu.Unlock()
	old.Close() // what was written to it is there; nothing more goes to it
	return nil
}

// Close closes the file; writes fail afterwards.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Close()
}

// ReopenOnHangup reopens files whenever the process gets SIGHUP, logging
// each to log, until the returned function is called. With no file it does
// nothing, and SIGHUP keeps its default (it ends the process).
func ReopenOnHangup(log *slog.Logger, files ...*File) (stop func()) {
	if len(files) == 0 {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
			case <-done:
				return
			}
			for _, f := range files {
				if err := f.Reopen(); err != nil {
					log.Error("SIGHUP: cannot reopen a log file; writing on to the one open", "path", f.Path(), "err", err)
					continue
				}
				log.Info("SIGHUP: reopened a log file", "path", f.Path())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(hup)
			close(done)
		})
	}
}
