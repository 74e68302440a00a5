// Package loopback gives tests addresses on 127.0.0.1.
package loopback

import (
	"net"
	"sync"
	"testing"
)

// handedOut remembers every address FreeAddr returned in this process, so
// two calls never return the same port even though the kernel may offer a
// just-closed port again.
var handedOut sync.Map

// FreeAddr returns a loopback address that nothing listens on right now and
// that no earlier call returned.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
}

// Serve listens on a fresh loopback port and runs handle on its own
// goroutine for every connection, until the test ends; it returns the
// address. handle owns the connection and closes it.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}
