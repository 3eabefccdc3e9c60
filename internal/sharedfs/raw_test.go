package sharedfs

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// rawClient speaks SFTP packets directly, for requests that pkg/sftp's
// client cannot send but a guest can, such as an open or mkdir that
// carries attributes, or a setstat that changes several at once.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	id   uint32
}

// SFTP packet types and attribute flags (draft-ietf-secsh-filexfer-02).
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpSetstat  = 9
	fxpMkdir    = 14
	fxpStatus   = 101
	fxpHandle   = 102
	attrUIDGID  = 0x2
	attrPerms   = 0x4
	fxfWrite    = 0x2
	fxfCreat    = 0x8
	fxfExcl     = 0x20
	statusOK    = 0
	statusPerm  = 3
	protocolVer = 3
)

// startRaw serves root with opts to a rawClient.
func startRaw(t *testing.T, root string, opts Options) *rawClient {
	t.Helper()
	srvConn, cliConn := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeOptions(ctx, srvConn, root, opts) }()
	c := &rawClient{t: t, conn: cliConn}
	t.Cleanup(func() {
		cliConn.Close()
		cancel()
		wait(t, done)
	})
	c.write(fxpInit, be32(nil, protocolVer))
	if typ, _ := c.read(); typ != fxpVersion {
		t.Fatalf("init: got packet type %d, want version", typ)
	}
	return c
}

func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

func str(b []byte, s string) []byte { return append(be32(b, uint32(len(s))), s...) }

func (c *rawClient) write(typ byte, payload []byte) {
	c.t.Helper()
	pkt := append(be32(nil, uint32(1+len(payload))), typ)
	if _, err := c.conn.Write(append(pkt, payload...)); err != nil {
		c.t.Fatalf("write packet: %v", err)
	}
}

func (c *rawClient) read() (typ byte, payload []byte) {
	c.t.Helper()
	var hdr [5]byte
	if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
		c.t.Fatalf("read packet: %v", err)
	}
	payload = make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(c.conn, payload); err != nil {
		c.t.Fatalf("read packet: %v", err)
	}
	return hdr[4], payload
}

// call sends a request of type typ whose fields follow the request id,
// and returns the reply's type and the fields after its id.
func (c *rawClient) call(typ byte, fields []byte) (byte, []byte) {
	c.t.Helper()
	c.id++
	c.write(typ, append(be32(nil, c.id), fields...))
	rtyp, reply := c.read()
	if len(reply) < 4 || binary.BigEndian.Uint32(reply) != c.id {
		c.t.Fatalf("reply to request %d has the wrong id", c.id)
	}
	return rtyp, reply[4:]
}

// status sends a request that is answered with a status, and returns its
// code.
func (c *rawClient) status(typ byte, fields []byte) uint32 {
	c.t.Helper()
	rtyp, reply := c.call(typ, fields)
	if rtyp != fxpStatus || len(reply) < 4 {
		c.t.Fatalf("request type %d: got reply type %d, want status", typ, rtyp)
	}
	return binary.BigEndian.Uint32(reply)
}

// create opens p for writing with O_CREAT (and O_EXCL if excl) and the
// attribute flags and values in attrs, then closes the handle. It returns
// the status code of the open.
func (c *rawClient) create(p string, excl bool, attrs []byte) uint32 {
	c.t.Helper()
	pflags := uint32(fxfWrite | fxfCreat)
	if excl {
		pflags |= fxfExcl
	}
	rtyp, reply := c.call(fxpOpen, append(be32(str(nil, p), pflags), attrs...))
	switch rtyp {
	case fxpStatus:
		return binary.BigEndian.Uint32(reply)
	case fxpHandle:
		if code := c.status(fxpClose, reply); code != statusOK {
			c.t.Fatalf("close %s: status %d", p, code)
		}
		return statusOK
	}
	c.t.Fatalf("open %s: got reply type %d", p, rtyp)
	return 0
}

// perms is an attribute block that carries permissions alone, as sshfs
// sends with open and mkdir.
func perms(mode uint32) []byte { return be32(be32(nil, attrPerms), mode) }
