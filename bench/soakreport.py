#!/usr/bin/env python3
"""The report of bench/soak.sh: key=value figures in, markdown out (targets, PASS/MISS).

soak.sh only measures; the arithmetic and the verdicts are here, in one readable place.
"""
import statistics
import sys

F = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if "=" in line:
        k, v = line.split("=", 1)
        F[k] = v


def g(k, default=None):
    return F.get(k, default)


def num(k):
    v = g(k)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


WAYS = [("lay", "laysocks"), ("native", "native SOCKS5 client"), ("pc", "proxychains4")]
PROXIES = [("m", "microsocks"), ("d", "danted")]
TIMEOUT_MS = num("meta.timeout_ms") or 5000
FAULT_TIMEOUT_MS = num("meta.fault_timeout_ms") or 1000
SLACK_MS = 100  # scheduling: the deadline is checked when a wait returns
checks = []


def check(ok, what):
    checks.append((bool(ok), what))
    return "PASS" if ok else "MISS"


def s(key, f):
    return num(f"soak.{key}.{f}")


def fmt(v, nd=0):
    return "–" if v is None else f"{v:,.{nd}f}"


out = []
p = out.append
p("# laysocks soak (bench/soak.sh)")
p("")
p(f"- Date: {g('meta.date', '?')}; {g('meta.cpus', '?')} CPUs; kernel {g('meta.kernel', '?')}; laysocks {g('meta.laysocks', '?')} (release)")
p(f"- {g('meta.versions', '')}")
p(f"- Counts: {g('meta.counts', '')}; connect timeout {TIMEOUT_MS / 1000:g} s "
  f"({FAULT_TIMEOUT_MS / 1000:g} s against the silent proxy); whole run {g('meta.seconds', '?')} s")
busy = [f"{k[5:]} {v} %" for k, v in F.items() if k.startswith("busy.")]
if busy:
    p(f"- Other load (CPU busy over 1 s before each section): {', '.join(busy)}")
p("- Rig: client netns 198.51.100.2 → proxy netns 198.51.100.1 (microsocks :1080, danted :1081, "
  "a listener that never answers :1095) → echo server (bench/echoserv.c) 203.0.113.2:7007 on the proxy "
  "netns' lo; the client has no route to the target. One process per run (bench/soak.c): "
  "every connection writes 16 bytes and must read the same 16 back.")
p("- fds: entries of /proc/self/fd before the first socket and after the last close. RSS: the "
  "process's VmRSS after warm-up (the first half of the sequential run, the first concurrent "
  "round) and at the end. Handshake: connect() until connected or failed (concurrent: until "
  "EPOLLOUT/EPOLLERR, or the native client's CONNECT reply).")
p("")


def table(section, title, per_conn):
    p(title)
    p("")
    p("| proxy | way | ok | fail | fds before → after | RSS warm → end KiB (growth) | handshake median / p99 / max µs | total s | vs native |")
    p("|---|---|---:|---:|---|---|---|---:|---:|")
    for px, pname in PROXIES:
        nat = s(f"{section}.{px}.native", "total_ms")
        for w, wname in WAYS:
            k = f"{section}.{px}.{w}"
            if s(k, "n") is None:
                if g(f"err.{k}"):
                    p(f"| {pname} | {wname} | failed: {g(f'err.{k}')[:120]} | | | | | | |")
                continue
            tot = s(k, "total_ms")
            ratio = f"{tot / nat:.2f}×" if tot and nat else "–"
            fail = int(s(k, "fail"))
            errs = g(f"soak.{k}.errs", "none")
            p(f"| {pname} | {wname} | {int(s(k, 'ok')):,} | {fail:,}{'' if not fail else ' (' + errs + ')'} | "
              f"{int(s(k, 'fds_before'))} → {int(s(k, 'fds_after'))} | "
              f"{int(s(k, 'rss_warm_kib')):,} → {int(s(k, 'rss_end_kib')):,} ({int(s(k, 'rss_growth_kib')):+,}) | "
              f"{fmt(s(k, 'hs_median_us'))} / {fmt(s(k, 'hs_p99_us'))} / {fmt(s(k, 'hs_max_us'))} | "
              f"{tot / 1000:.2f} | {ratio} |")
            if w == "lay":
                n = int(s(k, "n"))
                check(s(k, "ok") == n and fail == 0 and s(k, "hang") == 0,
                      f"{section} {pname}: all {n:,} connections through laysocks echoed intact")
                check(s(k, "fds_before") == s(k, "fds_after"), f"{section} {pname}: no fd leaked")
                check(s(k, "rss_growth_kib") < 1024, f"{section} {pname}: RSS growth after warm-up "
                      f"{int(s(k, 'rss_growth_kib'))} KiB < 1024 KiB")
                check(s(k, "hs_max_us") <= (TIMEOUT_MS + SLACK_MS) * 1000,
                      f"{section} {pname}: slowest handshake {s(k, 'hs_max_us') / 1000:.1f} ms within the "
                      f"{TIMEOUT_MS / 1000:g} s deadline")
    p("")


if any(k.startswith("soak.seq.") for k in F):
    table("seq", f"## 1. Sequential connections ({g('soak.seq.m.lay.n', '?')} per run)", True)
if any(k.startswith("soak.conc.") for k in F):
    table("conc", f"## 2. Concurrent connections ({g('soak.conc.m.lay.n', '?')} per run: rounds of "
          f"{g('meta.conc_n', '?')} non-blocking sockets open at once, one epoll loop)", False)

if any(k.startswith(("soak.fault.", "soak.silent.")) for k in F):
    p("## 3. Failing handshakes")
    p("")
    p("Half refused: every second connection asks for a closed port on the target, so the proxy "
      "answers REP 5 (RFC 1928 §6) and the connect fails with ECONNREFUSED, as a direct one would. "
      "Silent: a listener that accepts and never answers, so every handshake must fail with "
      f"ETIMEDOUT at the {FAULT_TIMEOUT_MS / 1000:g} s deadline.")
    p("")
    p("| run | way | n | ok | fail (errno) | fds before → after | RSS growth KiB | handshake max ms | total s |")
    p("|---|---|---:|---:|---|---|---:|---:|---:|")
    rows = [("fault.seq", "half refused, sequential, microsocks"), ("fault.conc", "half refused, concurrent, danted"),
            ("silent.conc", "silent proxy, concurrent"), ("silent.seq", "silent proxy, sequential")]
    for key, title in rows:
        for w, wname in WAYS[:2]:
            k = f"{key}.{w}"
            if s(k, "n") is None:
                continue
            p(f"| {title} | {wname} | {int(s(k, 'n')):,} | {int(s(k, 'ok')):,} | {int(s(k, 'fail')):,} ({g(f'soak.{k}.errs')}) | "
              f"{int(s(k, 'fds_before'))} → {int(s(k, 'fds_after'))} | {int(s(k, 'rss_growth_kib')):+,} | "
              f"{s(k, 'hs_max_us') / 1000:.1f} | {s(k, 'total_ms') / 1000:.2f} |")
            if w != "lay":
                continue
            n = int(s(k, "n"))
            check(s(k, "fds_before") == s(k, "fds_after"), f"{title}: no fd leaked")
            if key.startswith("fault"):
                check(s(k, "ok") == n // 2 and g(f"soak.{k}.errs") == f"ECONNREFUSED:{n - n // 2}" and s(k, "wrong") == 0,
                      f"{title}: exactly the refused half failed, with ECONNREFUSED")
                check(s(k, "hs_max_us") <= (TIMEOUT_MS + SLACK_MS) * 1000, f"{title}: every handshake ended within its deadline")
            else:
                check(s(k, "ok") == 0 and g(f"soak.{k}.errs") == f"ETIMEDOUT:{n}",
                      f"{title}: all {n} failed with ETIMEDOUT")
                check(s(k, "hs_max_us") <= (FAULT_TIMEOUT_MS + SLACK_MS) * 1000,
                      f"{title}: slowest {s(k, 'hs_max_us') / 1000:.0f} ms ≤ deadline {FAULT_TIMEOUT_MS:.0f} ms + {SLACK_MS} ms")
    p("")

if any(k.startswith("rss.") for k in F):
    p("## 4. Memory of `sleep 3` (KiB; the program process itself, 0.4 s after start, median of samples)")
    p("")
    p("VmRSS counts every resident page the process maps, shared libraries included; Pss divides "
      "each shared page among the processes that map it. The launcher and proxychains4 `exec` into "
      "the program (same PID); the launcher's companion (double-forked, only when it has files to "
      "remove or the built-in server to run) is listed apart.")
    p("")
    p("| way | VmRSS | Pss | added VmRSS | added Pss | samples |")
    p("|---|---:|---:|---:|---:|---:|")
    base_r, base_p = num("rss.sleep.rss"), num("rss.sleep.pss")
    env_r, env_p = num("rss.env_sleep.rss"), num("rss.env_sleep.pss")
    names = [("sleep", "`sleep 3`", None), ("env_sleep", "`env sleep 3`", None),
             ("lay", "`laysocks -x socks5://… -- sleep 3`", "sleep"),
             ("lay_builtin", "`laysocks -- sleep 3` (built-in server)", "sleep"),
             ("lay_builtin_companion", "… its companion (the built-in server)", None),
             ("lay_companion", "… companion of `-x` (it removes the remote-DNS name table at exit)", None),
             ("preload", "`env LD_PRELOAD=liblaysocks.so … sleep 3`", "env_sleep"),
             ("pc", "`proxychains4 -f conf sleep 3`", "sleep")]
    for k, title, base in names:
        r, ps = num(f"rss.{k}.rss"), num(f"rss.{k}.pss")
        if r is None:
            continue
        br, bp = (num(f"rss.{base}.rss"), num(f"rss.{base}.pss")) if base else (None, None)
        add_r = f"{r - br:+,.0f}" if br is not None else ""
        add_p = f"{ps - bp:+,.0f}" if bp is not None else ""
        p(f"| {title} | {r:,.0f} | {ps:,.0f} | {add_r} | {add_p} | {g(f'rss.{k}.n')} |")
    p("")
    for k, title in [("lay", "`laysocks -x … -- sleep`"), ("lay_builtin", "`laysocks -- sleep`")]:
        r, ps = num(f"rss.{k}.rss"), num(f"rss.{k}.pss")
        if r is not None and base_r is not None:
            check(r - base_r <= 1024, f"added VmRSS of {title} over `sleep`: {r - base_r:+.0f} KiB ≤ 1024 KiB")
    r, ps = num("rss.pc.rss"), num("rss.pc.pss")
    lr = num("rss.lay.rss")
    if r is not None and lr is not None and base_r is not None:
        p(f"- added VmRSS, laysocks / proxychains4: {lr - base_r:+.0f} / {r - base_r:+.0f} KiB; "
          f"added Pss: {num('rss.lay.pss') - base_p:+.0f} / {ps - base_p:+.0f} KiB")
        p("")

p("## Checks")
p("")
for ok, what in checks:
    p(f"- {'PASS' if ok else '**MISS**'}: {what}")
errs = [(k[4:], v) for k, v in F.items() if k.startswith("err.")]
for k, v in errs:
    p(f"- note: `{k}`: {v}")
print("\n".join(out))
