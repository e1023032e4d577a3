// Command tcpcopy is the baseline of bench/swarm-loopback.sh: it copies a
// file over one plain TCP connection on loopback into another file and
// fsyncs it, the least any transfer of the same bytes into a slot can do.
// Both ends run in this process (a sender goroutine and the receiver);
// the time is from the dial to the end of the fsync. It prints one JSON
// object: bytes, seconds, and the receiver's MB/s.
//
//	tcpcopy -in FILE -out FILE
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	in := flag.String("in", "", "file to send")
	out := flag.String("out", "", "file to write (created or truncated) and fsync")
	flag.Parse()
	if *in == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: tcpcopy -in FILE -out FILE")
		os.Exit(2)
	}
	r, err := copyFile(*in, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpcopy:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

type result struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s"`
}

// copyFile sends in over a loopback TCP connection and writes what
// arrives to out, then fsyncs out.
func copyFile(in, out string) (result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	defer ln.Close()
	src, err := os.Open(in)
	if err != nil {
		return result{}, err
	}
	defer src.Close()
	dst, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return result{}, err
	}
	defer dst.Close()

	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			sent <- err
			return
		}
		_, err = io.Copy(c, src) // sendfile(2) on Linux
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		sent <- err
	}()
	c, err := ln.Accept()
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	// A plain read/write loop with a 1 MiB buffer, as a receiver that
	// looks at the bytes would run (io.Copy would splice(2) them).
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{c}, buf)
	if err != nil {
		return result{}, err
	}
	if err := <-sent; err != nil {
		return result{}, err
	}
	if err := dst.Sync(); err != nil {
		return result{}, err
	}
	s := time.Since(start).Seconds()
	return result{Bytes: n, Seconds: s, MBps: float64(n) / s / 1e6}, nil
}
