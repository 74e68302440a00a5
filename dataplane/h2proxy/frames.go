package h2proxy

import (
	"bufio"
	"encoding/binary"
	"io"
	"sync/atomic"
)

// frameReader sits between a client's HTTP/2 connection and net/http's
// server, and rewrites what net/http would get wrong: a SETTINGS frame
// that names a setting more than once (dedupSettings, settings.go), and a
// request whose header block net/http would answer 400 where RFC 9113
// asks for RST_STREAM (headerCheck, headers.go).
//
// Every other byte passes unchanged; the reader follows frame boundaries
// (9-byte headers and their lengths) after the connection preface, and
// holds one frame at a time: a frame header, a SETTINGS frame, or a
// HEADERS or CONTINUATION frame, whose fragment it decodes.
type frameReader struct {
	r io.Reader
	// skip is what is left of the current frame's payload (or of the
	// preface) to pass through as it comes.
	skip int
	// held is a frame header, or a whole SETTINGS, HEADERS or
	// CONTINUATION frame (or what a rewrite made of it), read and not yet
	// handed on; held[off:] is what is left of it.
	held []byte
	off  int
	err  error // the read error after held is handed on
	// hdr follows header blocks, nil once net/http is bound to end the
	// connection anyway (headers.go).
	hdr *headerCheck
	// goAway is set once the client sent GOAWAY: net/http then closes
	// the connection itself (see countConn.reason).
	goAway atomic.Bool
}

const (
	frameHeaderLen   = 9
	frameSettings    = 0x4
	frameGoAway      = 0x7
	flagAck          = 0x1
	settingLen       = 6
	settingTableSize = 0x1
	// maxSettingsHeld bounds the SETTINGS frames rewritten: net/http
	// refuses more than 100 settings in one frame anyway.
	maxSettingsHeld = 100 * settingLen
)

// newFrameReader reads a client connection served by a net/http server
// whose MaxHeaderBytes is maxHeaderBytes (HTTP2Config as ServeConn sets
// it), r starting with the connection preface.
func newFrameReader(r io.Reader, maxHeaderBytes int) *frameReader {
	return &frameReader{
		r:    r,
		skip: len(h2Preface),
		held: make([]byte, 0, frameHeaderLen+maxSettingsHeld),
		hdr:  newHeaderCheck(maxHeaderBytes),
	}
}

// h2Preface is the client connection preface (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (fr *frameReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if fr.off < len(fr.held) {
			n := copy(p, fr.held[fr.off:])
			fr.off += n
			return n, nil
		}
		if fr.err != nil {
			return 0, fr.err
		}
		if fr.skip > 0 {
			n, err := fr.r.Read(p[:min(len(p), fr.skip)])
			fr.skip -= n
			return n, err
		}
		fr.next()
	}
}

// next reads the next frame header into held, and with it a SETTINGS
// frame or a header block fragment whole, to rewrite.
func (fr *frameReader) next() {
	if cap(fr.held) > heldKeep {
		fr.held = make([]byte, 0, frameHeaderLen+maxSettingsHeld)
	}
	fr.held, fr.off = fr.held[:frameHeaderLen], 0
	if !fr.fill(fr.held) {
		return
	}
	length := int(fr.held[0])<<16 | int(fr.held[1])<<8 | int(fr.held[2])
	if fr.held[3] == frameGoAway {
		fr.goAway.Store(true)
	}
	if fr.hdr != nil {
		hold, ok := fr.hdr.order(fr.held[3], binary.BigEndian.Uint32(fr.held[5:])&(1<<31-1), length)
		if !ok {
			fr.hdr = nil
		} else if hold {
			fr.held = fr.grow(frameHeaderLen+length, headerRoom)
			if !fr.fill(fr.held[frameHeaderLen:]) {
				return
			}
			if fr.held, ok = fr.hdr.check(fr.held); !ok {
				fr.hdr = nil
			}
			return
		}
	}
	if fr.held[3] != frameSettings || fr.held[4]&flagAck != 0 || length%settingLen != 0 || length > maxSettingsHeld {
		fr.skip = length
		return
	}
	fr.held = fr.held[:frameHeaderLen+length]
	if !fr.fill(fr.held[frameHeaderLen:]) {
		return
	}
	kept := dedupSettings(fr.held[frameHeaderLen:])
	fr.held = fr.held[:frameHeaderLen+kept]
	fr.held[0], fr.held[1], fr.held[2] = byte(kept>>16), byte(kept>>8), byte(kept)
}

// heldKeep is the most held keeps between frames: a larger one, for a
// large header block fragment, is let go once handed on.
const heldKeep = 4 << 10

// grow returns held, holding a frame header, cut to n bytes with room
// for extra more.
func (fr *frameReader) grow(n, extra int) []byte {
	if n+extra <= cap(fr.held) {
		return fr.held[:n]
	}
	b := make([]byte, n, n+extra)
	copy(b, fr.held)
	return b
}

// fill reads b whole. On a read error it keeps what came in held (cut to
// it) and the error, for Read to hand on in that order.
func (fr *frameReader) fill(b []byte) bool {
	n, err := io.ReadFull(fr.r, b)
	if err == nil {
		return true
	}
	if err == io.ErrUnexpectedEOF {
		err = io.EOF // the reader's own end, as net/http would have seen it
	}
	fr.held = fr.held[:len(fr.held)-len(b)+n]
	fr.err = err
	return false
}

// clientConn is an HTTP/2 client connection whose reads go through a
// frameReader.
type clientConn struct {
	*countConn
	fr *frameReader
}

// newClientConn reads c, an HTTP/2 client connection, through a
// frameReader; in clear (not TLS), through a read buffer too.
func newClientConn(c *countConn, maxHeaderBytes int, inClear bool) *clientConn {
	var r io.Reader = c
	if inClear {
		r = bufio.NewReaderSize(c, clientReadBuf)
	}
	return &clientConn{countConn: c, fr: newFrameReader(r, maxHeaderBytes)}
}

// clientReadBuf is the read buffer of an HTTP/2 client connection in
// clear. net/http reads each frame in two reads, its header and then its
// payload, and each would be a system call: a client that sends a batch
// of small requests would cost two reads a request. Buffered, one read
// takes what the client sent. A TLS connection's record buffer serves
// those reads already. A DATA frame larger than the buffer is read past
// it. The buffer lives as long as the connection, idle or not.
const clientReadBuf = 4 << 10

func (c *clientConn) Read(p []byte) (int, error) { return c.fr.Read(p) }
