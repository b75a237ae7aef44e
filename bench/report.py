#!/usr/bin/env python3
"""Turns the key=value figures run.sh collects into the markdown report.

Kept apart from run.sh so the arithmetic (ratios, targets, PASS/MISS) is in one
readable place; run.sh only measures.
"""
import sys

fig = {}
for line in open(sys.argv[1]):
    if "=" in line:
        k, v = line.rstrip("\n").split("=", 1)
        fig[k] = v


def num(key):
    try:
        return float(fig[key])
    except (KeyError, ValueError):
        return None


def f(x, nd=2):
    return "—" if x is None else f"{x:.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


summary = []  # (target, figure, verdict)


def verdict(name, value, limit, lower_is_better=True, unit="×", why_missing=None):
    if value is None:
        summary.append((name, "not measured" + (f" ({why_missing})" if why_missing else ""), "MISS"))
        return "MISS (not measured)"
    ok = value <= limit if lower_is_better else value >= limit
    v = "PASS" if ok else "MISS"
    summary.append((name, f"{value:.3f}{unit} (target {'≤' if lower_is_better else '≥'} {limit}{unit})", v))
    return v


out = []
p = out.append
p("# laysocks benchmark results\n")
p(f"- Date: {fig.get('meta.date', '?')}")
p(f"- Machine: {fig.get('meta.cpus', '?')} cores ({fig.get('meta.cpu', '?')}), kernel {fig.get('meta.kernel', '?')}, glibc {fig.get('meta.glibc', '?')}")
p(f"- laysocks: git {fig.get('meta.laysocks', '?')} (release build)")
p(f"- Peers and tools: {fig.get('meta.versions', '?')}")
p(f"- Counts: {fig.get('meta.counts', '?')}; whole run {fig.get('meta.seconds', '?')} s")
p("- Rig: client netns 198.51.100.2 → proxy netns 198.51.100.1 (microsocks :1080, danted :1081) → "
  "target 203.0.113.2:8080 (bench/zeroserv.c) on the proxy netns' lo; the client netns has no route to the target.")
if any(k.startswith(("loop.", "lat.")) for k in fig):
    p("- Rig for §6: delaying relays (bench/delayrelay.c) on 198.51.100.1 :1090 → microsocks :1080, :1091 → danted :1081, "
      ":1092 → microsocks with user/password :1082; echo server (bench/echoserv.c) on 203.0.113.2:7007.")
bz = [(k[5:], fig[k]) for k in ("busy.start", "busy.curl", "busy.conn", "busy.bulk", "busy.hook", "busy.rss", "busy.loop") if k in fig]
if bz:
    p("- Other load (CPU busy over 1 s just before each section, nothing of ours running): "
      + ", ".join(f"{k} {v} %" for k, v in bz))
broken = [(k[4:], fig[k]) for k in sorted(fig) if k.startswith("err.")]
if broken:
    p("\n**Not working in this run** (left out of the tables):\n")
    for k, v in broken:
        p(f"- `{k}`: {v}")
p("")


def ran(prefix):
    return any(k.startswith(prefix) for k in fig)  # prefix: str or tuple


# 1. start-up -----------------------------------------------------------------
def startup():
    p("## 1. Start-up (ms)\n")
    p(f"Timer: {fig.get('meta.timer', '?')}.\n")
    p("| command | mean | median | σ |")
    p("|---|---:|---:|---:|")
    rows = [("true", "`true`"), ("env_true", "`env true`"),
            ("launcher", "`laysocks -q -x socks5://… -- true`"),
            ("preload", "`env LD_PRELOAD=liblaysocks.so LAYSOCKS_LAYER=… true`"),
            ("pc", "`proxychains4 -q -f conf true`"),
            ("pc_preload", "`env LD_PRELOAD=libproxychains.so.4 PROXYCHAINS_CONF_FILE=… true`"),
            ("launcher_version", "`laysocks --version` (the launcher's own process)")]
    for k, label in rows:
        m = num(f"start.{k}.mean")
        if m is not None:
            p(f"| {label} | {f(m, 3)} | {f(num(f'start.{k}.median'), 3)} | {f(num(f'start.{k}.stddev'), 3)} |")
    lm, pm = num("start.launcher.mean"), num("start.pc.mean")
    r = ratio(lm, pm)
    p("")
    p(f"- laysocks launcher / proxychains4: **{f(r, 3)}×** (mean) — target ≤ 1.00 → "
      f"**{verdict('start-up: launcher ≤ proxychains4', r, 1.0, why_missing=fig.get('err.launcher'))}**")
    p(f"- bare preload / `env true`: {f(ratio(num('start.preload.mean'), num('start.env_true.mean')), 3)}× "
      f"(+{f((num('start.preload.mean') or 0) - (num('start.env_true.mean') or 0), 3)} ms); "
      f"bare preload / proxychains4: {f(ratio(num('start.preload.mean'), pm), 3)}×")
    p(f"- bare preload, laysocks / proxychains: {f(ratio(num('start.preload.mean'), num('start.pc_preload.mean')), 3)}×")
    p(f"- launcher / `true`: {f(ratio(lm, num('start.true.mean')), 3)}×; proxychains4 / `true`: {f(ratio(pm, num('start.true.mean')), 3)}×")
    p("")


# 2. one connection -------------------------------------------------------------
def one_connection():
    p("## 2. One connection through microsocks\n")
    if ran("curl."):
        p("### 2a. `curl -s -o /dev/null http://203.0.113.2:8080/small` (ms per process)\n")
        p("| how | mean | median | σ |")
        p("|---|---:|---:|---:|")
        rows = [("native", "native `curl --socks5`"), ("env_native", "native, via `env`"),
                ("launcher", "laysocks launcher"), ("preload", "laysocks preload via `env`"),
                ("pc", "proxychains4")]
        for k, label in rows:
            m = num(f"curl.{k}.mean")
            if m is not None:
                p(f"| {label} | {f(m, 3)} | {f(num(f'curl.{k}.median'), 3)} | {f(num(f'curl.{k}.stddev'), 3)} |")
        p("")
        r = ratio(num("curl.launcher.mean"), num("curl.native.mean"))
        rm = ratio(num("curl.launcher.median"), num("curl.native.median"))
        p(f"- laysocks launcher / native: **{f(r, 3)}×** mean, {f(rm, 3)}× median — target ≤ 1.02 → "
          f"**{verdict('curl: launcher ≤ 1.02× native', r, 1.02, why_missing=fig.get('err.launcher'))}**")
        r = ratio(num("curl.preload.mean"), num("curl.env_native.mean"))
        rm = ratio(num("curl.preload.median"), num("curl.env_native.median"))
        p(f"- laysocks preload / native (both via `env`): **{f(r, 3)}×** mean, {f(rm, 3)}× median — target ≤ 1.02 → "
          f"**{verdict('curl: preload ≤ 1.02× native', r, 1.02, why_missing=fig.get('err.preload'))}**")
        p(f"- proxychains4 / native: {f(ratio(num('curl.pc.mean'), num('curl.native.mean')), 3)}× mean")
        p("")
    p("### 2b. In one process: connect + request + read to EOF + close, sequential (µs per cycle)\n")
    p(f"{fig.get('conn.native.runs', '?')} runs of each way, interleaved; each figure is the median over the runs of that run's statistic.\n")
    p("| how | mean | median | p90 |")
    p("|---|---:|---:|---:|")
    rows = [("native", "native SOCKS5 in the program (`connloop -s`)"),
            ("preload", "plain connect under liblaysocks.so"),
            ("pc", "plain connect under libproxychains.so.4")]
    for k, label in rows:
        m = num(f"conn.{k}.mean")
        if m is not None:
            p(f"| {label} | {f(m, 1)} | {f(num(f'conn.{k}.median'), 1)} | {f(num(f'conn.{k}.p90'), 1)} |")
    p("")
    r = ratio(num("conn.preload.mean"), num("conn.native.mean"))
    rm = ratio(num("conn.preload.median"), num("conn.native.median"))
    p(f"- laysocks / native: **{f(r, 3)}×** mean, {f(rm, 3)}× median — target ≤ 1.02 → "
      f"**{verdict('connection loop: laysocks ≤ 1.02× native', r, 1.02, why_missing=fig.get('err.conn_preload') or fig.get('err.preload'))}**")
    p(f"- proxychains4 / native: {f(ratio(num('conn.pc.mean'), num('conn.native.mean')), 3)}× mean, "
      f"{f(ratio(num('conn.pc.median'), num('conn.native.median')), 3)}× median")
    names = sorted({k.split(".")[2] for k in fig if k.startswith("sc.")})
    if names:
        p("")
        p("Syscalls per connection (strace -f -c; 200 cycles minus 100 cycles, divided by 100):\n")
        p("| syscall | native | laysocks | proxychains4 |")
        p("|---|---:|---:|---:|")
        tot = {w: 0.0 for w in ("native", "preload", "pc")}
        for n in names:
            vals = [num(f"sc.{w}.{n}") or 0.0 for w in ("native", "preload", "pc")]
            for w, v in zip(("native", "preload", "pc"), vals):
                tot[w] += v
            p(f"| {n} | {f(vals[0], 2)} | {f(vals[1], 2)} | {f(vals[2], 2)} |")
        p(f"| **total** | **{f(tot['native'], 2)}** | **{f(tot['preload'], 2)}** | **{f(tot['pc'], 2)}** |")
    p("")


# 3. throughput -----------------------------------------------------------------
def throughput():
    p("## 3. Throughput: 100 MiB download through danted (MB/s, curl's speed_download)\n")
    p(f"Runs interleaved (native, preload, launcher, proxychains4, the order rotated each round), {fig.get('bulk.native.n', '?')} each; the verdict uses the median.\n")
    p("| how | mean | median | best |")
    p("|---|---:|---:|---:|")
    rows = [("native", "native `curl --socks5`"), ("preload", "laysocks preload"),
            ("launcher", "laysocks launcher"), ("pc", "proxychains4")]
    for k, label in rows:
        m = num(f"bulk.{k}.mean")
        if m is not None:
            p(f"| {label} | {f(m, 1)} | {f(num(f'bulk.{k}.median'), 1)} | {f(num(f'bulk.{k}.best'), 1)} |")
    p("")
    nat = num("bulk.native.mean")
    for k, label in (("preload", "preload"), ("launcher", "launcher")):
        r = ratio(num(f"bulk.{k}.median"), num("bulk.native.median"))
        if r is not None or k == "preload":
            p(f"- laysocks {label} / native: {f(ratio(num(f'bulk.{k}.mean'), nat), 3)}× mean, "
              f"**{f(r, 3)}×** median, "
              f"{f(ratio(num(f'bulk.{k}.best'), num('bulk.native.best')), 3)}× best — target ≥ 0.98 → "
              f"**{verdict(f'throughput: {label} ≥ 0.98× native', r, 0.98, lower_is_better=False, why_missing=fig.get('err.bulk_' + k))}**")
    p(f"- proxychains4 / native: {f(ratio(num('bulk.pc.mean'), nat), 3)}× mean")
    p("")


# 4. hook cost ------------------------------------------------------------------
def hook_cost():
    p("## 4. Cost of hooked calls on fds that are not ours (ns per call)\n")
    p(f"hookcost pinned to CPU {fig.get('meta.hook_cpu', '?')} (the idlest one when the section started). "
      "Fastest batch, minimum over runs (the systematic cost); the median batch is in brackets. "
      "\"again\" is a second run without any preload minus the first: the noise floor of an \"added\" figure. "
      f"Exported by liblaysocks.so: `{fig.get('hooked.preload', '?')}`; by libproxychains.so.4: `{fig.get('hooked.pc', '?')}`.\n")
    p("| call | no preload | again (noise) | laysocks | added | proxychains4 | added | proxychains4 + proxy_dns | added |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst = None
    for c in ("write", "read", "poll", "dup", "close"):
        base, lay, pc, pcd = (num(f"hook.{n}.{c}.min") for n in ("none", "preload", "pc", "pcdns"))
        mb, ml, mp, mpd = (num(f"hook.{n}.{c}.median") for n in ("none", "preload", "pc", "pcdns"))
        add = None if lay is None or base is None else lay - base
        if add is not None:
            worst = add if worst is None else max(worst, add)
        d = lambda a, b: None if a is None or b is None else a - b  # noqa: E731
        n2, mn2 = num(f"hook.none2.{c}.min"), num(f"hook.none2.{c}.median")
        p(f"| {c} | {f(base, 1)} [{f(mb, 1)}] | {f(d(n2, base), 1)} [{f(d(mn2, mb), 1)}] | {f(lay, 1)} [{f(ml, 1)}] | **{f(add, 1)}** [{f(d(ml, mb), 1)}] | "
          f"{f(pc, 1)} [{f(mp, 1)}] | {f(d(pc, base), 1)} [{f(d(mp, mb), 1)}] | {f(pcd, 1)} [{f(mpd, 1)}] | {f(d(pcd, base), 1)} [{f(d(mpd, mb), 1)}] |")
    p("")
    p(f"- worst added by laysocks: **{f(worst, 1)} ns** per call — target ≤ 15 ns → "
      f"**{verdict('hook cost: ≤ 15 ns added per call', worst, 15.0, unit=' ns', why_missing=fig.get('err.hook_preload'))}**")
    p("")


# 5. RSS ------------------------------------------------------------------------
def rss():
    p("## 5. Max RSS of `sleep 1` (KiB, GNU time %M; for information)\n")
    p("| command | max RSS | added |")
    p("|---|---:|---:|")
    base = num("rss.sleep")
    for k, label, ref in (("sleep", "`sleep 1`", "sleep"), ("env_sleep", "`env sleep 1`", "sleep"),
                          ("launcher", "`laysocks -q -x … -- sleep 1`", "sleep"),
                          ("preload", "`env LD_PRELOAD=liblaysocks.so … sleep 1`", "env_sleep"),
                          ("pc", "`proxychains4 -q … sleep 1`", "sleep")):
        v = num(f"rss.{k}")
        if v is not None:
            p(f"| {label} | {f(v, 0)} | {f(None if k == ref else v - (num('rss.' + ref) or 0), 0)} |")
    p("")



# 6. event loop -------------------------------------------------------------------
LOOP_SCEN = (("m200", "200 connections, no auth"), ("a200", "200 connections, user/password"),
             ("m1000", "1000 connections, no auth"), ("a1000", "1000 connections, user/password"))


def event_loop():
    rtt = fig.get("meta.loop_rtt_ms", "20")
    p(f"## 6. Event loop: concurrent connections from one asyncio thread, {rtt} ms round trip to the proxy\n")
    p(f"`bench/loopbench.py conc N`: N echo connections at once from one asyncio thread, started "
      f"{fig.get('meta.loop_batch', '?')} per loop iteration (connect, 16 bytes "
      f"there and back, close), through microsocks behind `bench/delayrelay.c` ({rtt} ms round trip: every chunk held "
      f"{float(rtt) / 2:g} ms each way). Total: from the first connect to the last echo, in the program. "
      "Stall: the largest extra delay seen by a task that sleeps 1 ms in a loop (the longest time the loop could not run). "
      f"laysocks and native: {fig.get('loop.m200.lay.runs', '?')} runs each, interleaved, median total (min–max); "
      "proxychains4: one run. Listen backlogs (port:backlog): "
      f"`{fig.get('meta.loop_backlogs', '?').strip()}`.\n")
    p("| connections | laysocks total ms | native total ms | proxychains4 total ms | laysocks / native | proxychains4 / laysocks | stall laysocks ms: max [median] | stall native ms: max [median] | stall proxychains4 ms |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sc, label in LOOP_SCEN:
        if not ran(f"loop.{sc}."):
            continue
        lt, nt, pt = (num(f"loop.{sc}.{w}.total") for w in ("lay", "native", "pc"))

        def rng(w):
            v = num(f"loop.{sc}.{w}.total")
            if v is None:
                return "—"
            if w == "pc":
                return f(v, 0)
            return f"{f(v, 1)} ({f(num(f'loop.{sc}.{w}.total_min'), 0)}–{f(num(f'loop.{sc}.{w}.total_max'), 0)})"
        pcs = rng("pc") if pt is not None else ("skipped" if f"loop.{sc}.pc.skipped" in fig else "—")
        p(f"| {label} | {rng('lay')} | {rng('native')} | {pcs} | **{f(ratio(lt, nt), 3)}×** | **{f(ratio(pt, lt), 1)}×** | "
          f"**{f(num(f'loop.{sc}.lay.lag_max'), 2)}** [{f(num(f'loop.{sc}.lay.lag_median'), 2)}] | "
          f"{f(num(f'loop.{sc}.native.lag_max'), 2)} [{f(num(f'loop.{sc}.native.lag_median'), 2)}] | {f(num(f'loop.{sc}.pc.lag_max'), 0)} |")
    p("")
    for sc, label in LOOP_SCEN:
        if not ran(f"loop.{sc}."):
            continue
        lt, nt, pt = (num(f"loop.{sc}.{w}.total") for w in ("lay", "native", "pc"))
        why = fig.get(f"err.loop_{sc}.lay") or fig.get("err.loop_lay")
        p(f"- {label}: laysocks / native **{f(ratio(lt, nt), 3)}×** — target ≤ 1.3 → "
          f"**{verdict(f'event loop, {label}: laysocks ≤ 1.3× native', ratio(lt, nt), 1.3, why_missing=why or fig.get(f'err.loop_{sc}.native'))}**")
        if f"loop.{sc}.pc.skipped" in fig:
            p(f"  - proxychains4 not run: {fig[f'loop.{sc}.pc.skipped']}.")
        else:
            p(f"  - laysocks faster than proxychains4 by **{f(ratio(pt, lt), 1)}×** — target ≥ 50 → "
              f"**{verdict(f'event loop, {label}: laysocks ≥ 50× faster than proxychains4', ratio(pt, lt), 50, lower_is_better=False, why_missing=why or fig.get(f'err.loop_{sc}.pc'))}**")
        p(f"  - longest stall of the loop under laysocks **{f(num(f'loop.{sc}.lay.lag_max'), 2)} ms** (max over runs; "
          f"median {f(num(f'loop.{sc}.lay.lag_median'), 2)} ms; native {f(num(f'loop.{sc}.native.lag_max'), 2)} ms) — target ≤ 5 ms → "
          f"**{verdict(f'event loop, {label}: stall ≤ 5 ms', num(f'loop.{sc}.lay.lag_max'), 5.0, unit=' ms', why_missing=why)}**")
    p("")
    if ran("lat."):
        p(f"### 6b. One connection at a time through danted, {rtt} ms round trip (ms per connection)\n")
        p(f"`bench/loopbench.py seq`: blocking sockets, socket() to the echo's last byte. "
          f"{fig.get('lat.native.n', '?')} connections of each way over interleaved rounds (one warm-up per process not counted). "
          "Native does greeting, then request, each after the previous reply: two round trips before the echo's one. "
          "`--pipeline` sends greeting and request in one write.\n")
        p("| how | median | mean | p10 | p90 |")
        p("|---|---:|---:|---:|---:|")
        for k, label in (("lat.native", "native SOCKS5 in the program"), ("lat.lay", "laysocks"),
                         ("lat.pipe", "laysocks `--pipeline`"),
                         ("latm.native", "native, through microsocks (for information)"),
                         ("latm.pipe", "laysocks `--pipeline` through microsocks: the fallback (for information)")):
            m = num(f"{k}.median")
            if m is not None:
                p(f"| {label} | {f(m, 2)} | {f(num(f'{k}.mean'), 2)} | {f(num(f'{k}.p10'), 2)} | {f(num(f'{k}.p90'), 2)} |")
        p("")
        nat, lay, pipe = num("lat.native.median"), num("lat.lay.median"), num("lat.pipe.median")
        p(f"- laysocks / native: **{f(ratio(lay, nat), 3)}×** median — target ≤ 1.02 → "
          f"**{verdict('single connection via danted: laysocks ≤ 1.02× native', ratio(lay, nat), 1.02, why_missing=fig.get('err.loop_lat.lay'))}**")
        saved = None if nat is None or pipe is None else nat - pipe
        p(f"- `--pipeline` saves **{f(saved, 2)} ms** against native (one round trip is {rtt} ms; "
          f"pipeline / native {f(ratio(pipe, nat), 3)}×) — target ≥ {0.9 * float(rtt):g} ms (one round trip, within 10 %) → "
          f"**{verdict('single connection via danted: --pipeline one round trip under native', saved, 0.9 * float(rtt), lower_is_better=False, unit=' ms', why_missing=fig.get('err.loop_lat.pipe'))}**")
        mn, mp = num("latm.native.median"), num("latm.pipe.median")
        if mn is not None and mp is not None:
            p(f"- through microsocks, which cannot take it, `--pipeline` costs {f(mp - mn, 2)} ms more than native per connection (the fallback)")
        p("")


for section, prefix in ((startup, "start."), (one_connection, ("curl.", "conn.")), (throughput, "bulk."), (hook_cost, "hook."), (rss, "rss."), (event_loop, ("loop.", "lat."))):
    if ran(prefix):
        section()

# summary -------------------------------------------------------------------------
p("## Targets\n")
p("| target | figure | verdict |")
p("|---|---|---|")
for name, figure, v in summary:
    p(f"| {name} | {figure} | **{v}** |")
print("\n".join(out))
