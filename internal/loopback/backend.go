package loopback

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

var headEnd = []byte("\r\n\r\n")

// errHeadTooLarge: a request head outgrew AnswerHeads' buffer.
var errHeadTooLarge = errors.New("loopback: request head larger than the buffer")

// AnswerHeads answers every request head that arrives on c (the bytes up to
// a blank line; request bodies are not expected) with resp, in order, until
// a read or a write fails or a head outgrows buf. It allocates nothing, so
// that a benchmark through a proxy measures the proxy.
func AnswerHeads(c net.Conn, resp, buf []byte) error {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		for {
			i := bytes.Index(buf[:n], headEnd)
			if i < 0 {
				break
			}
			if _, err := c.Write(resp); err != nil {
				return err
			}
			n = copy(buf, buf[i+4:n])
		}
		if n == len(buf) {
			return errHeadTooLarge
		}
	}
}

// FixedBackend listens on a fresh port of 127.0.0.1 and answers every
// request head on every connection with resp (AnswerHeads) until the test
// ends. It returns the address.
func FixedBackend(t testing.TB, resp string) string {
	t.Helper()
	return Serve(t, func(c net.Conn) {
		defer c.Close()
		AnswerHeads(c, []byte(resp), make([]byte, 16<<10))
	})
}
