#!/usr/bin/env python3
"""Client for the event-loop section of bench/run.sh (see bench/README.md §6).

    loopbench.py conc N HOST PORT [--socks PROXY:PORT [--auth FILE]]
    loopbench.py seq  N HOST PORT [--socks PROXY:PORT [--auth FILE]]

conc: N echo connections at once from one asyncio thread: connect, send 16 bytes, read
them back, close. A watcher task sleeps 1 ms in a loop and keeps the largest extra delay
it saw: that is the longest time the loop could not run (a connect that blocks for a
handshake shows up here as a stall of a whole proxy round trip or more).

seq: N connections one after another with blocking sockets, each timed from socket()
to the echo's last byte; the figure is per connection.

Without --socks the program connects straight to HOST:PORT, so it is the program
laysocks or proxychains4 is run on. With --socks it is the native reference: it speaks
SOCKS5 itself, one message at a time, each after the previous reply (RFC 1928 §3, §4,
§6; with --auth, RFC 1929 §2). The auth FILE holds the user name on its first line and
the password on its second, so neither appears on a command line.

Prints one line of key=value figures; exits 1 if any connection failed.
"""
import asyncio
import ipaddress
import socket
import statistics
import sys
import time

BATCH = 10  # connections started per loop iteration (--batch)


def greeting(auth):
    # RFC 1928 §3: VER 5, one method: 0x00 no authentication or 0x02 user/password.
    return b"\x05\x01\x02" if auth else b"\x05\x01\x00"


def auth_msg(auth):
    # RFC 1929 §2: VER 1, ULEN, UNAME, PLEN, PASSWD.
    u, p = auth
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def request(host, port):
    # RFC 1928 §4: VER 5, CMD 1 CONNECT, RSV, ATYP 1 IPv4, DST.ADDR, DST.PORT.
    return b"\x05\x01\x00\x01" + ipaddress.IPv4Address(host).packed + port.to_bytes(2, "big")


def reply_tail_len(head):
    # RFC 1928 §6: VER REP RSV ATYP, then BND.ADDR (by ATYP) and BND.PORT.
    if head[0] != 5 or head[1] != 0:
        raise OSError(f"proxy refused the CONNECT (REP {head[1]})")
    return {1: 4 + 2, 4: 16 + 2}.get(head[3])


def check_method(rep, auth):
    want = 2 if auth else 0
    if rep != bytes([5, want]):
        raise OSError(f"proxy chose method {rep!r}, wanted {want}")


async def aio_connect(host, port, socks, auth):
    if socks is None:
        return await asyncio.open_connection(host, port)
    r, w = await asyncio.open_connection(*socks)
    w.write(greeting(auth))
    check_method(await r.readexactly(2), auth)
    if auth:
        w.write(auth_msg(auth))
        if (await r.readexactly(2))[1] != 0:
            raise OSError("proxy rejected the user name and password")
    w.write(request(host, port))
    head = await r.readexactly(4)
    n = reply_tail_len(head)
    await r.readexactly(n if n is not None else (await r.readexactly(1))[0] + 2)
    return r, w


async def conc(n, host, port, socks, auth):
    loop = asyncio.get_running_loop()
    lag = 0.0
    done = False
    errors = []

    lag_at = 0.0
    over = 0  # stalls over 5 ms

    async def watch():
        nonlocal lag, lag_at, over
        while not done:
            t = loop.time()
            await asyncio.sleep(0.001)
            d = loop.time() - t - 0.001
            over += d > 0.005
            if d > lag:
                lag, lag_at = d, t

    async def one(i):
        t0 = loop.time()
        try:
            r, w = await aio_connect(host, port, socks, auth)
            msg = b"echo-%011d" % i
            w.write(msg)
            if await r.readexactly(len(msg)) != msg:
                raise OSError("echo came back different")
            w.close()
            return loop.time() - t0
        except (OSError, asyncio.IncompleteReadError) as e:
            errors.append(f"{type(e).__name__}: {e}")
            return None

    watcher = loop.create_task(watch())
    await asyncio.sleep(0.02)  # the watcher is running before the first connect
    lag, over = 0.0, 0
    t0 = time.perf_counter()
    lt0 = loop.time()
    tasks = []
    for i in range(n):
        # A few connections per loop iteration: the program's own work for starting
        # 1000 connects in one iteration would be a stall of its own, in every way.
        if i and i % BATCH == 0:
            await asyncio.sleep(0)
        tasks.append(loop.create_task(one(i)))
    res = await asyncio.gather(*tasks)
    total = time.perf_counter() - t0
    done = True
    await watcher
    ok = [x for x in res if x is not None]
    per = statistics.median(ok) * 1e3 if ok else 0.0
    print(f"ok={len(ok)} of={n} total_ms={total * 1e3:.1f} maxlag_ms={lag * 1e3:.2f} "
          f"conn_median_ms={per:.1f} conn_max_ms={max(ok, default=0) * 1e3:.1f} "
          f"lag_at_ms={(lag_at - lt0) * 1e3:.1f} stalls_over_5ms={over}")
    if errors:
        print(f"first error: {errors[0]} ({len(errors)} failed)", file=sys.stderr)
    return not errors


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise OSError("connection closed early")
        b += c
    return b


def seq_one(host, port, socks, auth, i):
    t0 = time.perf_counter()
    if socks is None:
        s = socket.create_connection((host, port), timeout=10)
    else:
        s = socket.create_connection(socks, timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(greeting(auth))
        check_method(recv_exact(s, 2), auth)
        if auth:
            s.sendall(auth_msg(auth))
            if recv_exact(s, 2)[1] != 0:
                raise OSError("proxy rejected the user name and password")
        s.sendall(request(host, port))
        head = recv_exact(s, 4)
        n = reply_tail_len(head)
        recv_exact(s, n if n is not None else recv_exact(s, 1)[0] + 2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"echo-%011d" % i
    s.sendall(msg)
    if recv_exact(s, len(msg)) != msg:
        raise OSError("echo came back different")
    s.close()
    return time.perf_counter() - t0


def seq(n, host, port, socks, auth):
    seq_one(host, port, socks, auth, 0)  # warm-up: first-use costs of the interpreter
    ts = sorted(seq_one(host, port, socks, auth, i + 1) for i in range(n))
    print(f"ok={n} of={n} " + " ".join(f"{k}={v * 1e3:.2f}" for k, v in (
        ("median_ms", statistics.median(ts)), ("mean_ms", statistics.mean(ts)),
        ("min_ms", ts[0]), ("max_ms", ts[-1]))) + " all_ms=" + ",".join(f"{t * 1e3:.2f}" for t in ts))
    return True


def main(argv):
    global BATCH
    if len(argv) < 4 or argv[0] not in ("conc", "seq"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    mode, n, host, port = argv[0], int(argv[1]), argv[2], int(argv[3])
    socks = auth = None
    rest = argv[4:]
    while rest:
        if rest[0] == "--socks" and len(rest) > 1:
            h, _, p = rest[1].rpartition(":")
            socks = (h, int(p))
        elif rest[0] == "--batch" and len(rest) > 1:
            BATCH = max(1, int(rest[1]))
        elif rest[0] == "--auth" and len(rest) > 1:
            with open(rest[1], "rb") as f:
                lines = f.read().splitlines()
            auth = (lines[0], lines[1])
        else:
            print(f"loopbench.py: unknown argument {rest[0]}", file=sys.stderr)
            return 2
        rest = rest[2:]
    try:
        ok = asyncio.run(conc(n, host, port, socks, auth)) if mode == "conc" else seq(n, host, port, socks, auth)
    except (OSError, asyncio.IncompleteReadError) as e:
        print(f"loopbench.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
