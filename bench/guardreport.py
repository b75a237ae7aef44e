#!/usr/bin/env python3
"""Turns bench/guard.sh's key=value figures into the markdown report.

    guardreport.py FIGURES

All the arithmetic of the report (differences, ratios, targets, PASS/MISS) is here, so
guard.sh only measures. A way that did not work (err.KEY) is listed with its error and
left out of the tables rather than shown as a number.
"""
import sys

UNTRAPPED_NS = 150  # added ns per untrapped system call (the price of any filter)
CONNECT_US = 100    # added us per connect, guard handshake over the preload layer's, p50
START_RATIO = 1.5   # laysocks (guard) start-up over proxychains4's


def load(path):
    f = {}
    for line in open(path):
        line = line.rstrip("\n")
        if "=" in line:
            k, v = line.split("=", 1)
            f[k] = v
    return f


F = load(sys.argv[1])


def num(key):
    v = F.get(key)
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def fmt(v, d=1):
    return "–" if v is None else f"{v:.{d}f}"


def verdict(ok):
    return "–" if ok is None else ("PASS" if ok else "MISS")


out = []
p = out.append
summary = []

p("# laysocks guard benchmark (bench/guard.sh): the seccomp user-notification guard")
p("")
p(f"{F.get('meta.date', '?')} · {F.get('meta.cpus', '?')} × {F.get('meta.cpu', '?')} · "
  f"kernel {F.get('meta.kernel', '?')} · laysocks {F.get('meta.laysocks', '?')}")
p("")
p(f"Versions: {F.get('meta.versions', '?')}. Counts: {F.get('meta.counts', '?')}. "
  f"Took {F.get('meta.seconds', '?')} s.")
busy = [f"{k[5:]} {v} %" for k, v in F.items() if k.startswith("busy.")]
if busy:
    p("")
    p("CPU busy with other work in the second before each section: " + ", ".join(busy) + ".")
errs = [(k[4:], v) for k, v in F.items() if k.startswith("err.")]
if errs:
    p("")
    p("Ways that failed (left out of the tables):")
    p("")
    for k, v in errs:
        p(f"- `{k}`: {v}")
p("")
p("Ways: **bare** = no layer; **--no-guard** = `laysocks --no-guard`, the preload layer "
  "alone; **guard** = `laysocks` (both layers, the default); **proxychains4** = "
  "`proxychains4 -q -f CONF`; **native** = the client speaks SOCKS5 itself. "
  "The static client is out of any preload layer's reach, so under `laysocks` only the "
  "guard can proxy it.")

# ---------------------------------------------------------------- 1
if any(k.startswith("sys.") for k in F):
    p("")
    p("## 1. System calls [added per untrapped call ≤ %d ns]" % UNTRAPPED_NS)
    p("")
    p("`guardcost`, calls made with the `syscall` instruction (no libc, no preload hook in "
      "the path), ns per call: "
      "fastest batch / median batch, minimum over the runs; pinned to one CPU with the "
      "supervisor. *added* = guard − --no-guard, the filter's (or, for trapped calls, the "
      "supervisor's) price.")
    p("")
    p("| call | bare | bare again | --no-guard | guard | added (fastest) | added (median) | |")
    p("|---|---|---|---|---|---|---|---|")
    names = [("getppid", "getppid", True), ("read0", "read, 0 bytes", True),
             ("write1", "write /dev/null, 1 byte", True),
             ("send", "send (sendto, no address), unix dgram", True),
             ("sendmsg", "sendmsg, unix dgram (trapped)", False),
             ("getpeername", "getpeername, unix socket (trapped, let through)", False)]
    worst = None
    for key, label, untrapped in names:
        cells = []
        for way in ("bare", "bare2", "noguard", "guard"):
            lo, md = num(f"sys.{way}.{key}.min"), num(f"sys.{way}.{key}.median")
            cells.append(f"{fmt(lo)} / {fmt(md)}" if lo is not None else "–")
        g, n = num(f"sys.guard.{key}.min"), num(f"sys.noguard.{key}.min")
        gm, nm = num(f"sys.guard.{key}.median"), num(f"sys.noguard.{key}.median")
        add = g - n if g is not None and n is not None else None
        addm = gm - nm if gm is not None and nm is not None else None
        v = ""
        if untrapped and add is not None:
            v = verdict(add <= UNTRAPPED_NS)
            worst = add if worst is None else max(worst, add)
        elif not untrapped and add is not None:
            v = f"{add / 1000:.1f} µs per call"
        p(f"| {label} | " + " | ".join(cells) + f" | {fmt(add)} | {fmt(addm)} | {v} |")
    if worst is not None:
        summary.append(("added cost per untrapped system call", f"≤ {worst:.1f} ns",
                        f"≤ {UNTRAPPED_NS} ns", verdict(worst <= UNTRAPPED_NS)))
    tm = num("sys.guard.sendmsg.min")
    nm_ = num("sys.noguard.sendmsg.min")
    if tm is not None and nm_ is not None:
        summary.append(("added cost per trapped call (sendmsg on a unix socket, let through)",
                        f"{(tm - nm_) / 1000:.1f} µs", "", "info"))

# ---------------------------------------------------------------- 2
if any(k.startswith("conn.") for k in F):
    p("")
    p("## 2. One connection through microsocks [guard handshake ≤ preload's + %d µs, p50]" % CONNECT_US)
    p("")
    p("`guardconn conn`: socket + blocking connect + SOCKS5 handshake + one byte echoed "
      "back from 203.0.113.2, in one process; µs per cycle, median over the runs of each "
      "run's figure (max: over all cycles)"
      + (f"; client, supervisor, microsocks and the echo server pinned to one CPU."
         if F.get("meta.pin") == "1" else "; unpinned."))
    p("")
    p("| way | who does the handshake | p50 | p90 | mean | min | max | p50 − (a) |")
    p("|---|---|---|---|---|---|---|---|")
    rows = [("preload", "(a) dynamic client, `--no-guard`", "the preload layer, in the process"),
            ("guard", "(b) static client, guard", "the guard (supervisor)"),
            ("guard_raw", "(b′) dynamic client, `connect` by the `syscall` instruction, guard",
             "the guard (supervisor)"),
            ("both", "(c) dynamic client, guard", "the preload layer; the guard vets the connect to the proxy"),
            ("native", "(d) native SOCKS5 client, bare", "the client"),
            ("native_guard", "(d′) native client (static), guard",
             "the client; the guard vets its connect to the proxy"),
            ("pc", "(e) dynamic client, proxychains4", "proxychains4, in the process")]
    a50 = num("conn.preload.p50")
    for key, way, who in rows:
        p50 = num(f"conn.{key}.p50")
        if p50 is None:
            continue
        d = p50 - a50 if a50 is not None else None
        p(f"| {way} | {who} | {fmt(p50)} | {fmt(num(f'conn.{key}.p90'))} | "
          f"{fmt(num(f'conn.{key}.mean'))} | {fmt(num(f'conn.{key}.min'))} | "
          f"{fmt(num(f'conn.{key}.max'))} | {'' if key == 'preload' else fmt(d)} |")
    b50 = num("conn.guard.p50")
    if a50 is not None and b50 is not None:
        d = b50 - a50
        p("")
        p(f"(b) − (a) = {d:.1f} µs at p50, {num('conn.guard.p90') - num('conn.preload.p90'):.1f} µs "
          f"at p90 [{verdict(d <= CONNECT_US)}]. ")
        summary.append(("added per trapped connect, guard handshake vs the preload layer's (p50)",
                        f"{d:+.1f} µs ({b50:.0f} vs {a50:.0f} µs)", f"≤ {CONNECT_US} µs",
                        verdict(d <= CONNECT_US)))
    c50 = num("conn.both.p50")
    if a50 is not None and c50 is not None:
        summary.append(("both layers vs the preload layer alone, per connect (p50)",
                        f"{c50 - a50:+.1f} µs", "", "info"))
    n50, ng50 = num("conn.native.p50"), num("conn.native_guard.p50")
    if n50 is not None and ng50 is not None:
        summary.append(("a vetted connect (native client, guard on vs bare), p50",
                        f"{ng50 - n50:+.1f} µs", "", "info"))
    pc50 = num("conn.pc.p50")
    if pc50 is not None and b50 is not None:
        summary.append(("guard handshake vs proxychains4, per connect (p50)",
                        f"{b50 / pc50:.2f}× ({b50:.0f} vs {pc50:.0f} µs)", "", "info"))

# ---------------------------------------------------------------- 3
if any(k.startswith("peer.") for k in F):
    p("")
    p("## 3. getpeername on a proxied socket")
    p("")
    p("`guardconn peer`: one connection, then getpeername in batches of 256; ns per call, "
      "fastest / median batch, minimum over the runs; pinned to one CPU. Under a layer the "
      "answer must be the target (checked).")
    p("")
    p("| way | answered by | fastest | median | added over bare (median) |")
    p("|---|---|---|---|---|")
    rows = [("bare", "native client (static), no layer", "the kernel (the peer is the proxy)"),
            ("preload", "dynamic client, `--no-guard`", "the preload layer, in the process"),
            ("guard", "static client, guard", "the supervisor (a notification per call)"),
            ("both", "dynamic client, guard", "the preload layer"),
            ("guard_other", "native client (static), guard", "the kernel, after a notification (let through)")]
    bm = num("peer.bare.median")
    for key, way, who in rows:
        m = num(f"peer.{key}.median")
        if m is None:
            continue
        d = m - bm if bm is not None and key != "bare" else None
        p(f"| {way} | {who} | {fmt(num(f'peer.{key}.min'))} | {fmt(m)} | {fmt(d)} |")
    g = num("peer.guard.median")
    if g is not None and bm is not None:
        summary.append(("getpeername answered by the guard vs the kernel (median)",
                        f"{g / 1000:.1f} µs vs {bm / 1000:.2f} µs", "", "info"))

# ---------------------------------------------------------------- 4
if any(k.startswith("start.") for k in F):
    p("")
    p("## 4. Start-up [`laysocks -- true` ≤ %.1f× `proxychains4 -q true`]" % START_RATIO)
    p("")
    p("hyperfine `-N`, the runs in 4 rounds with the order rotated, times pooled; ms.")
    p("")
    p("| command | median | mean | σ | min | n | median / proxychains4 |")
    p("|---|---|---|---|---|---|---|")
    pcm = num("start.pc.median")
    labels = [("true", "`true`"), ("pc", "`proxychains4 -q -f CONF true`"),
              ("noguard", "`laysocks -q --no-guard -x URL -- true`"),
              ("guard", "`laysocks -q -x URL -- true` (guard)"),
              ("noguard_local", "`laysocks -q --no-guard -x URL --dns local -- true`"),
              ("guard_local", "`laysocks -q -x URL --dns local -- true` (guard)")]
    for key, label in labels:
        m = num(f"start.{key}.median")
        if m is None:
            continue
        r = f"{m / pcm:.2f}×" if pcm else "–"
        p(f"| {label} | {fmt(m, 3)} | {fmt(num(f'start.{key}.mean'), 3)} | "
          f"{fmt(num(f'start.{key}.stddev'), 3)} | {fmt(num(f'start.{key}.min'), 3)} | "
          f"{F.get(f'start.{key}.n', '–')} | {r} |")
    gm, ngm = num("start.guard.median"), num("start.noguard.median")
    if gm is not None and pcm:
        summary.append(("start-up, `laysocks -- true` (guard) vs `proxychains4 -q true` (median)",
                        f"{gm / pcm:.2f}× ({gm:.2f} vs {pcm:.2f} ms)", f"≤ {START_RATIO}×",
                        verdict(gm / pcm <= START_RATIO)))
    if gm is not None and ngm is not None:
        summary.append(("start-up added by the guard (vs `--no-guard`, median)",
                        f"{gm - ngm:+.2f} ms", "", "info"))
    gl, ngl = num("start.guard_local.median"), num("start.noguard_local.median")
    if gl is not None and pcm:
        summary.append(("the same with `--dns local` (no name table, no companion process)",
                        f"{gl / pcm:.2f}× ({gl:.2f} ms)"
                        + (f"; guard adds {gl - ngl:+.2f} ms" if ngl is not None else ""),
                        "", "info"))

if summary:
    p("")
    p("## Summary")
    p("")
    p("| measurement | figure | target | |")
    p("|---|---|---|---|")
    for m, v, t, ok in summary:
        p(f"| {m} | {v} | {t} | {ok} |")

print("\n".join(out))
