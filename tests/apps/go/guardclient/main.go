// guardclient is the Go program of tests/guard.rs: a client that makes its socket calls
// itself (Go never calls libc's connect, static or dynamic), so only the seccomp guard can
// see them. Standard library only. Every mode prints `key=value` lines and ends with
// `alive`; every wait is bounded.
//
//	http N M URL LEN FNV    N GETs from M goroutines, a fresh connection each
//	                        (DisableKeepAlives); each body must have LEN bytes and FNV-1a
//	                        64 hash FNV (hex). Prints `http ok=.. bad=..` and the first error.
//	remote ADDR MSG         dial ADDR, print RemoteAddr and LocalAddr, echo MSG.
//	resolve NAME            Go's own resolver (PreferGo): `addr=IP` per address.
//	dialname HOST:PORT PATH Go's own resolver and dialer, GET PATH, print the body's
//	                        length and hash and the connection's RemoteAddr.
//	signals N ADDR          N echo connections while a goroutine sends the process SIGURG
//	                        and SIGALRM every 5 ms.
//	pid ADDR COUNT          print pid and ppid, then COUNT times: dial ADDR, echo, print
//	                        `dial=ok` or `dial=ERRNO`, sleep 100 ms.
package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func out(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
}

func die(format string, args ...interface{}) {
	out(format, args...)
	out("alive")
	os.Exit(1)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		die("usage: bad number %q", s)
	}
	return n
}

// errName names the errno inside err, as the C probes do.
func errName(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		switch en {
		case syscall.ENOSYS:
			return "ENOSYS"
		case syscall.ECONNREFUSED:
			return "ECONNREFUSED"
		case syscall.EACCES:
			return "EACCES"
		case syscall.EPERM:
			return "EPERM"
		case syscall.ENETUNREACH:
			return "ENETUNREACH"
		case syscall.EHOSTUNREACH:
			return "EHOSTUNREACH"
		case syscall.ETIMEDOUT:
			return "ETIMEDOUT"
		case syscall.ECONNRESET:
			return "ECONNRESET"
		case syscall.EINTR:
			return "EINTR"
		case syscall.EISCONN:
			return "EISCONN"
		}
		return "errno" + strconv.Itoa(int(en))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "TIMEOUT"
	}
	return "OTHER(" + err.Error() + ")"
}

// goResolver is Go's own DNS client: /etc/hosts, then UDP (and TCP) to resolv.conf's
// nameserver, never getaddrinfo.
var goResolver = &net.Resolver{PreferGo: true}

var dialer = &net.Dialer{Timeout: 15 * time.Second, Resolver: goResolver}

func fnvHex(b []byte) string {
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}

func modeHTTP(args []string) {
	if len(args) != 5 {
		die("usage: http N M URL LEN FNV")
	}
	n, m, url := atoi(args[0]), atoi(args[1]), args[2]
	wantLen, wantSum := atoi(args[3]), args[4]
	tr := &http.Transport{
		DialContext:       dialer.DialContext,
		DisableKeepAlives: true,
		Proxy:             nil,
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, ok, bad int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < m; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for atomic.AddInt64(&next, 1) <= int64(n) {
				err := fetch(client, url, wantLen, wantSum)
				if err != nil {
					atomic.AddInt64(&bad, 1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					atomic.AddInt64(&ok, 1)
				}
			}
		}()
	}
	wg.Wait()
	out("http ok=%d bad=%d", ok, bad)
	if e := firstErr.Load(); e != nil {
		out("first_error=%s", e)
	}
	out("alive")
	if bad != 0 {
		os.Exit(1)
	}
}

func fetch(client *http.Client, url string, wantLen int, wantSum string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if len(body) != wantLen || fnvHex(body) != wantSum {
		return fmt.Errorf("body of %d bytes, hash %s (want %d, %s)", len(body), fnvHex(body), wantLen, wantSum)
	}
	return nil
}

// echo sends msg+"\n" on c and checks that the same line comes back.
func echo(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	want := []byte(msg + "\n")
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(want) {
		return fmt.Errorf("echo %q, want %q", got, want)
	}
	return nil
}

func modeRemote(args []string) {
	if len(args) != 2 {
		die("usage: remote ADDR MSG")
	}
	c, err := dialer.Dial("tcp", args[0])
	if err != nil {
		die("dial=%s", errName(err))
	}
	defer c.Close()
	out("remote=%s", c.RemoteAddr())
	out("local=%s", c.LocalAddr())
	if err := echo(c, args[1]); err != nil {
		die("echo_error=%v", err)
	}
	out("echo=ok")
	out("alive")
}

func modeResolve(args []string) {
	if len(args) != 1 {
		die("usage: resolve NAME")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := goResolver.LookupIPAddr(ctx, args[0])
	if err != nil {
		die("resolve_error=%v", err)
	}
	for _, a := range addrs {
		out("addr=%s", a.IP)
	}
	out("alive")
}

func modeDialName(args []string) {
	if len(args) != 2 {
		die("usage: dialname HOST:PORT PATH")
	}
	c, err := dialer.Dial("tcp", args[0])
	if err != nil {
		die("dial=%s", errName(err))
	}
	defer c.Close()
	out("remote=%s", c.RemoteAddr())
	host, _, _ := net.SplitHostPort(args[0])
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", args[1], host)
	resp, err := io.ReadAll(c)
	if err != nil {
		die("read_error=%v", err)
	}
	sep := []byte("\r\n\r\n")
	i := indexOf(resp, sep)
	if i < 0 {
		die("no_header_end len=%d", len(resp))
	}
	body := resp[i+len(sep):]
	out("body_len=%d", len(body))
	out("body_fnv=%s", fnvHex(body))
	out("alive")
}

func indexOf(b, sep []byte) int {
	for i := 0; i+len(sep) <= len(b); i++ {
		if string(b[i:i+len(sep)]) == string(sep) {
			return i
		}
	}
	return -1
}

func modeSignals(args []string) {
	if len(args) != 2 {
		die("usage: signals N ADDR")
	}
	n, addr := atoi(args[0]), args[1]
	ch := make(chan os.Signal, 64)
	signal.Notify(ch, syscall.SIGALRM, syscall.SIGURG)
	var got int64
	go func() {
		for range ch {
			atomic.AddInt64(&got, 1)
		}
	}()
	stop := make(chan struct{})
	var sent int64
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		pid := os.Getpid()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				syscall.Kill(pid, syscall.SIGURG)
				syscall.Kill(pid, syscall.SIGALRM)
				atomic.AddInt64(&sent, 2)
			}
		}
	}()
	ok, bad := 0, 0
	var firstErr error
	for i := 0; i < n; i++ {
		c, err := dialer.Dial("tcp", addr)
		if err == nil {
			if c.RemoteAddr().String() != addr {
				err = fmt.Errorf("RemoteAddr %s", c.RemoteAddr())
			} else {
				err = echo(c, fmt.Sprintf("signal-round-%d", i))
			}
			c.Close()
		}
		if err != nil {
			bad++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			ok++
		}
	}
	close(stop)
	out("signals ok=%d bad=%d", ok, bad)
	out("signals_sent=%d", atomic.LoadInt64(&sent))
	if firstErr != nil {
		out("first_error=%s %v", errName(firstErr), firstErr)
	}
	out("alive")
	if bad != 0 {
		os.Exit(1)
	}
}

func modePid(args []string) {
	if len(args) != 2 {
		die("usage: pid ADDR COUNT")
	}
	addr, count := args[0], atoi(args[1])
	out("pid=%d ppid=%d", os.Getpid(), os.Getppid())
	for i := 0; i < count; i++ {
		c, err := dialer.Dial("tcp", addr)
		if err == nil {
			err = echo(c, fmt.Sprintf("pid-round-%d", i))
			c.Close()
		}
		if err != nil {
			out("dial=%s", errName(err))
		} else {
			out("dial=ok")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out("alive")
}

func main() {
	if len(os.Args) < 2 {
		die("usage: guardclient http|remote|resolve|dialname|signals|pid ...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "http":
		modeHTTP(args)
	case "remote":
		modeRemote(args)
	case "resolve":
		modeResolve(args)
	case "dialname":
		modeDialName(args)
	case "signals":
		modeSignals(args)
	case "pid":
		modePid(args)
	default:
		die("usage: unknown mode %q", os.Args[1])
	}
}
