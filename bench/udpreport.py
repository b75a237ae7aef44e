#!/usr/bin/env python3
"""Turns what bench/udp.sh collected into the markdown report.

    udpreport.py FIGURES RAWDIR

FIGURES: key=value lines (meta, sanity, errors, syscall counts, unroutable datagrams).
RAWDIR: udpbench's output lines, KEY.WAY (one run a line), KEY = lat or rateLEN.
"""
import glob
import os
import statistics
import sys

fig = {}
for line in open(sys.argv[1]):
    if "=" in line:
        k, v = line.rstrip("\n").split("=", 1)
        fig[k] = v
RAW = sys.argv[2]

NAMES = {
    "direct": "direct (no proxy)",
    "native": "native SOCKS5 UDP client",
    "lay": "laysocks",
    "sf": "socksify (Dante's client)",
    "direct_c": "direct, connected socket",
    "lay_c": "laysocks, connected socket",
    "sf_c": "socksify, connected socket",
}


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError, TypeError):
        return None


def f(x, nd=1):
    return "—" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def runs(key):
    """way -> list of dicts (one per run)."""
    out = {}
    for path in glob.glob(os.path.join(RAW, f"{key}.*")):
        way = path.rsplit(".", 1)[1]
        out[way] = [kv(l) for l in open(path) if l.startswith("ok=1")]
    return out


def srv_us(r, count):
    """CPU µs of the proxy namespace's processes per datagram of a run."""
    t, hz, n = num(r, "srv_ticks"), num(r, "hz"), num(r, count)
    return None if t is None or not hz or not n else t / hz * 1e6 / n


summary = []


def verdict(name, ok, figure):
    v = "—" if ok is None else ("PASS" if ok else "MISS")
    summary.append((name, figure, v))
    return v


out = []
p = out.append
p("# laysocks UDP benchmark (bench/udp.sh)\n")
p(f"- Date: {fig.get('meta.date', '?')}")
p(f"- Machine: {fig.get('meta.cpus', '?')} cores ({fig.get('meta.cpu', '?')}), kernel {fig.get('meta.kernel', '?')}")
p(f"- laysocks: git {fig.get('meta.laysocks', '?')} (release build), `{fig.get('meta.lay_cmd', '?')} -- udpbench …`")
p(f"- Peers and tools: {fig.get('meta.versions', '?')}")
p(f"- Counts: {fig.get('meta.counts', '?')}; whole run {fig.get('meta.seconds', '?')} s")
p("- Rig: client netns 198.51.100.2 (route to 198.51.100.0/24 only) — veth — proxy netns 198.51.100.1: "
  "danted :1081 (`udpassociate` allowed, no auth), `udpecho` on 0.0.0.0:7007; the target 203.0.113.2:7007 is "
  "on the proxy host's `lo`, which the client cannot route to. The direct reference sends to the echo at "
  "198.51.100.1:7007 over the same veth.")
pins = [fig[k] for k in ("meta.lat_pin", "meta.rate_pin") if k in fig]
if "meta.lat_pin" in fig:
    p(f"- CPUs: §1 {fig['meta.lat_pin']}" + (f"; §2 {fig['meta.rate_pin']}" if "meta.rate_pin" in fig else ""))
elif "meta.rate_pin" in fig:
    p(f"- CPUs: §2 {fig['meta.rate_pin']}")
bz = [(k[5:], fig[k]) for k in ("busy.lat", "busy.rate") if k in fig]
if bz:
    p("- Other load (CPU busy over 1 s just before each section, nothing of ours running): "
      + ", ".join(f"{k} {v} %" for k, v in bz))
broken = [(k[4:], fig[k]) for k in sorted(fig) if k.startswith("err.")]
if broken:
    p("\n**Not working in this run** (left out of the tables):\n")
    for k, v in broken:
        p(f"- `{k}`: {v}")
p("")

# 1. round trips -------------------------------------------------------------------
lat = runs("lat")
if lat:
    n = next(iter(lat.values()))[0].get("n", "?") if any(lat.values()) else "?"
    ln = next(iter(lat.values()))[0].get("len", "?") if any(lat.values()) else "?"
    p(f"## 1. Round trip of a {ln}-byte datagram to the echo (µs, one at a time)\n")
    p(f"Median over the runs of each run's figure ({n} round trips a run). *added*: the median minus "
      "the direct path's. *CPU*: the client process's own CPU time per round trip; *server CPU*: danted's processes' and the echo's together (clock ticks: ±10 ms over a run). *first*: the first "
      "round trip of a run, which opens the SOCKS session (for the native client: its UDP ASSOCIATE "
      "plus the first round trip).\n")
    p("| way | median | added | min | p90 | p99 | CPU | server CPU | first | runs | lost |")
    p("|---|---|---|---|---|---|---|---|---|---|---|")
    M = {}
    for w in ("direct", "native", "lay", "sf", "direct_c", "lay_c", "sf_c"):
        rs = lat.get(w)
        if not rs:
            continue
        m = {k: med([num(r, k) for r in rs]) for k in ("median_us", "min_us", "p90_us", "p99_us", "cpu_us", "first_us")}
        m["lost"] = sum(int(r.get("lost", 0)) for r in rs)
        m["srv"] = med([srv_us(r, "n") for r in rs])
        M[w] = m
    base = {w: M.get("direct_c" if w.endswith("_c") else "direct", {}).get("median_us") for w in M}
    for w, m in M.items():
        added = None if w.startswith("direct") or base[w] is None else m["median_us"] - base[w]
        p(f"| {NAMES[w]} | {f(m['median_us'])} | {f(added) if added is not None else ''} | {f(m['min_us'])} | "
          f"{f(m['p90_us'])} | {f(m['p99_us'])} | {f(m['cpu_us'])} | {f(m['srv'])} | {f(m['first_us'], 0)} | {len(lat[w])} | {m['lost']} |")
    p("")
    g = lambda w, k="median_us": M.get(w, {}).get(k)
    r_nat = ratio(g("lay"), g("native"))
    r_sf = ratio(g("lay"), g("sf"))
    add = lambda w: None if g(w) is None or g("direct") is None else g(w) - g("direct")
    p(f"- laysocks / native, median round trip: **{f(r_nat, 2)}×** "
      f"(as a rate of round trips: {f(ratio(g('native'), g('lay')), 2)}× native; target ≥ 0.9×)")
    p(f"- added by the proxy path: laysocks {f(add('lay'))} µs, native {f(add('native'))} µs, socksify {f(add('sf'))} µs; "
      f"laysocks adds {f(ratio(add('lay'), add('native')), 2)}× what the native client adds")
    p(f"- laysocks / socksify, median round trip: {f(r_sf, 2)}×; CPU per round trip: laysocks {f(g('lay', 'cpu_us'))} µs, "
      f"native {f(g('native', 'cpu_us'))} µs, socksify {f(g('sf', 'cpu_us'))} µs")
    if g("lay_c") is not None and g("native") is not None:
        p(f"- connected socket (send/recv): laysocks / native {f(ratio(g('lay_c'), g('native')), 2)}×, "
          f"laysocks / socksify {f(ratio(g('lay_c'), g('sf_c')), 2)}×")
    p("")
    rr = ratio(g("native"), g("lay"))
    verdict("round trip, laysocks vs native (rate of round trips)", None if rr is None else rr >= 0.9,
            f"{f(rr, 2)}× (laysocks {f(g('lay'))} µs, native {f(g('native'))} µs)")
    verdict("round trip, laysocks vs socksify", None if r_sf is None else r_sf <= 1.0,
            f"{f(r_sf, 2)}× socksify's time (socksify {f(g('sf'))} µs)")

# 2. datagrams per second --------------------------------------------------------------
keys = sorted({os.path.basename(x).split(".")[0] for x in glob.glob(os.path.join(RAW, "rate*.*"))},
              key=lambda k: int(k[4:]))
if keys:
    p("## 2. Datagrams per second, a window in flight\n")
    w0 = None
    for key in keys:
        rr = runs(key)
        any_run = next((r for rs in rr.values() for r in rs), {})
        w0 = any_run.get("window", "?")
        p(f"### {key[4:]}-byte datagrams, window {w0}, {any_run.get('secs', '?')[:4]} s a run\n")
        p("Answered datagrams per second: median over the runs (min–max). *client CPU*: the client "
          "process's CPU time per datagram (its kernel work on the veth included); *server CPU*: that of "
          "danted's processes and the echo together (clock ticks, so ±10 ms over the run).\n")
        p("| way | datagrams/s | min–max | vs native | client CPU µs | server CPU µs | lost | late |")
        p("|---|---|---|---|---|---|---|---|")
        D = {}
        for w in ("direct", "native", "lay", "sf"):
            rs = rr.get(w)
            if not rs:
                continue
            d = [num(r, "dps") for r in rs]
            D[w] = med(d)
            cpu = med([num(r, "cpu_us") for r in rs])
            srv = med([srv_us(r, "recv") for r in rs])
            lost = sum(int(r.get("lost", 0)) for r in rs)
            late = sum(int(r.get("late", 0)) for r in rs)
            vs = "" if w in ("direct", "native") else f"{f(ratio(D[w], D.get('native')), 2)}×"
            p(f"| {NAMES[w]} | {f(D[w], 0)} | {f(min(d), 0)}–{f(max(d), 0)} | {vs} | {f(cpu, 2)} | {f(srv, 1)} | {lost} | {late} |")
        p("")
        rn = ratio(D.get("lay"), D.get("native"))
        rs_ = ratio(D.get("lay"), D.get("sf"))
        p(f"- laysocks / native: **{f(rn, 2)}×** (target ≥ 0.9×); laysocks / socksify: {f(rs_, 2)}×; "
          f"native / direct: {f(ratio(D.get('native'), D.get('direct')), 2)}× (danted's relay)\n")
        verdict(f"datagrams/s, {key[4:]} B, laysocks vs native", None if rn is None else rn >= 0.9, f"{f(rn, 2)}×")
        verdict(f"datagrams/s, {key[4:]} B, laysocks vs socksify", None if rs_ is None else rs_ >= 1.0, f"{f(rs_, 2)}×")

# 3. system calls -------------------------------------------------------------------
sc = {}
for k, v in fig.items():
    if k.startswith("sc."):
        _, way, name = k.split(".", 2)
        sc.setdefault(way, {})[name] = float(v)
if sc:
    p("## 3. System calls per round trip (strace -f -c, 2000 minus 1000 round trips)\n")
    ways = [w for w in ("direct", "native", "lay", "lay_c", "sf") if w in sc]
    names = sorted({n for w in ways for n in sc[w]}, key=lambda n: -max(sc[w].get(n, 0) for w in ways))
    p("| call | " + " | ".join(NAMES[w] for w in ways) + " |")
    p("|---|" + "---|" * len(ways))
    for n in names:
        p(f"| `{n}` | " + " | ".join(f(sc[w].get(n), 2) if sc[w].get(n) else "" for w in ways) + " |")
    p("| **total** | " + " | ".join(f"**{f(sum(sc[w].values()), 2)}**" for w in ways) + " |")
    p("")

# Checks -------------------------------------------------------------------------------
p("## Checks\n")
nr = [(k[8:], int(v)) for k, v in fig.items() if k.startswith("noroute.")]
if nr:
    p("Datagrams the client namespace could not route (`OutNoRoutes`, counted around every run; one "
      "sent straight to the target would count here): "
      + ", ".join(f"{NAMES.get(w, w)} {v}" for w, v in sorted(nr)) + ".")
    leak = sum(v for _, v in nr)
    verdict("no datagram sent around the proxy", leak == 0, f"{leak} unroutable")
foreign = sum(int(r.get("foreign", 0)) for key in ["lat"] + keys for rs in runs(key).values() for r in rs)
p(f"\nAnswers from anyone but the target (or, native, with a wrong header), over every run: {foreign}. "
  "Every answer's payload was checked byte for byte (a mismatch ends the run with an error).\n")

p("## Targets\n")
p("| measurement | figure | verdict |")
p("|---|---|---|")
for name, figure, v in summary:
    p(f"| {name} | {figure} | {v} |")
print("\n".join(out))
