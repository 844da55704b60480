package main

import (
	"bufio"
	"context"
	"net"
	"time"
)

// stallTimeout is how long a connection may wait for the server's next
// byte while a request is outstanding. It is longer than any query the
// service runs (a batch is given writeTimeout), and it is what finally
// frees a connection to a server that stopped answering without closing
// it, which no context can interrupt.
const stallTimeout = writeTimeout + 10*time.Second

// stallDialer dials connections that fail once the server stalls.
type stallDialer struct{}

func (stallDialer) Dial(network, address string) (net.Conn, error) {
	return stallDialer{}.DialContext(context.Background(), network, address)
}

func (stallDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return stallDialer{}.DialContext(ctx, network, address)
}

func (stallDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return newStallConn(c), nil
}

// stallConn moves its deadline stallTimeout ahead on every write and on
// reads that return data. A request is always a write followed by reads,
// so an idle connection never trips it, and a slow but moving response
// (loading the whole table) does not either. Reads move the deadline only
// once it is half used, to keep the common small read cheap.
//
// It also buffers reads: lib/pq reads in pieces of 4 KiB, which would cost
// a system call every few rows while the whole table streams in.
type stallConn struct {
	net.Conn
	in       *bufio.Reader
	deadline time.Time
}

// readBuffer is the size of a connection's read buffer.
const readBuffer = 64 << 10

func newStallConn(c net.Conn) *stallConn {
	sc := &stallConn{Conn: c}
	sc.in = bufio.NewReaderSize(readerFunc(sc.read), readBuffer)
	return sc
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.extend(time.Now())
	return c.Conn.Write(b)
}

func (c *stallConn) Read(b []byte) (int, error) {
	return c.in.Read(b)
}

func (c *stallConn) read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		if now := time.Now(); c.deadline.Sub(now) < stallTimeout/2 {
			c.extend(now)
		}
	}
	return n, err
}

func (c *stallConn) extend(now time.Time) {
	c.deadline = now.Add(stallTimeout)
	c.Conn.SetDeadline(c.deadline)
}

// readerFunc turns a function into an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }
