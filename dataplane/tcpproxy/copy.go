package tcpproxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/tlsinspect"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// closeWrite ends what goes to the endpoint: over TLS, a close_notify
// alert, then the socket's FIN either way.
func closeWrite(backend net.Conn) {
	if tc, ok := backend.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	if raw := upstream.TCPConn(backend); raw != nil {
		raw.CloseWrite()
	}
}

// copyBufSize is the most one read of a half on Linux moves: four TLS
// records' worth, so that a bulk transfer copied (from a peer on this
// host) costs a quarter of the reads and sends of 16 KiB ones, which on
// loopback cut the CPU per MiB by about 30% (see BENCHMARKS.md). A burst
// reads as many whole segments of dst as fit (tcpseg.Fit): one over
// loopback. A buffer is held only while its bytes wait to be sent; small
// exchanges give it back at once.
const copyBufSize = 64 << 10

// copyBuf is the buffer of a half's reads on Linux.
type copyBuf = [copyBufSize]byte

var copyBufs = sync.Pool{New: func() any { return new(copyBuf) }}

func getCopyBuf() *copyBuf  { return copyBufs.Get().(*copyBuf) }
func putCopyBuf(b *copyBuf) { copyBufs.Put(b) }

// recordBuf is pump's buffer: one TLS record, the most one Read of a TLS
// connection returns. pump holds it for the half's whole life, idle or
// not, so it is no larger.
type recordBuf = [tlsinspect.MaxRecord]byte

var recordBufs = sync.Pool{New: func() any { return new(recordBuf) }}

// pump copies src to dst for h until src's EOF (nil) or an error, through
// a pooled buffer: io.Copy would allocate one per call, since a TLS
// connection offers no WriterTo and net.TCPConn's ReadFrom falls back to
// io.Copy for a source that is no socket.
func (h *half) pump(dst io.Writer, src io.Reader) error {
	buf := recordBufs.Get().(*recordBuf)
	defer recordBufs.Put(buf)
	for {
		m, err := src.Read(buf[:])
		if m > 0 {
			w, werr := dst.Write(buf[:m])
			h.sent(int64(w))
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// maxInspect bounds what a session reads of the client before it picks:
// a ClientHello of one full record. The same again is scratch space for
// tlsinspect.Parse to join a ClientHello cut into several records.
const maxInspect = tlsinspect.MaxRecord + 5

type inspectBuf [2 * maxInspect]byte

var inspectBufs = sync.Pool{New: func() any { return new(inspectBuf) }}

func getInspectBuf() *inspectBuf { return inspectBufs.Get().(*inspectBuf) }

// putInspectBuf gives back b, which may be nil.
func putInspectBuf(b *inspectBuf) {
	if b != nil {
		inspectBufs.Put(b)
	}
}

// inspect reads the client's first bytes into buf while they may be the
// start of a TLS ClientHello, for at most timeout, and returns them with
// what they say. A client that sends nothing, or not a ClientHello, is not
// TLS; one whose ClientHello does not end in time or in maxInspect bytes
// is TLS without SNI. An error or EOF of the client ends the reading too:
// the copy that follows meets it again. What it returns points into buf.
func inspect(c *net.TCPConn, buf *inspectBuf, timeout time.Duration) ([]byte, tlsinspect.Hello) {
	data, scratch := buf[:maxInspect], buf[maxInspect:]
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	n := 0
	h, more := tlsinspect.Parse(nil, scratch)
	for more && n < len(data) {
		m, err := c.Read(data[n:])
		n += m
		h, more = tlsinspect.Parse(data[:n], scratch)
		if err != nil {
			break
		}
	}
	return data[:n], h
}
