#!/usr/bin/env python3
"""Turns what bench/dns.sh collected into the markdown report.

    dnsreport.py FIGURES RAWDIR

FIGURES: key=value lines (meta, sanity, errors, resolver query counts). RAWDIR: the
gaibench output lines, gai-WAY.MODE.FAMILY.lines (one `seq` run a line) and
map-KEY.lines (a `run` line, then one line per phase of `gaibench threads`).
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


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError, TypeError):
        return None


def f(x, nd=2):
    return "—" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


summary = []


def check(name, ok, figure):
    v = "PASS" if ok else "FAIL"
    summary.append((name, figure, v))
    return v


out = []
p = out.append
p("# laysocks DNS benchmark (bench/dns.sh)\n")
p(f"- Date: {fig.get('meta.date', '?')}")
p(f"- Machine: {fig.get('meta.cpus', '?')} cores ({fig.get('meta.cpu', '?')}), kernel {fig.get('meta.kernel', '?')}, glibc {fig.get('meta.glibc', '?')}")
p(f"- laysocks: git {fig.get('meta.laysocks', '?')} (release build), `{fig.get('meta.lay_cmd', '?')} -- gaibench …`")
p(f"- Peers and tools: {fig.get('meta.versions', '?')}")
p(f"- Counts: {fig.get('meta.counts', '?')}; whole run {fig.get('meta.seconds', '?')} s")
p("- Rig: one network namespace with only `lo`; dnsmasq on 127.0.0.1:53 answers every name itself "
  "(`--address=/#/203.0.113.9`, `--address=/#/2001:db8::9`, `--no-resolv`, no upstream); "
  "`/etc/netns/NS/resolv.conf` points glibc at it. The proxy (127.0.0.1:1080) does not exist: getaddrinfo does not connect.")
bz = [(k[5:], fig[k]) for k in ("busy.gai", "busy.map") if k in fig]
if bz:
    p("- Other load (CPU busy over 1 s just before each section, nothing of ours running): "
      + ", ".join(f"{k} {v} %" for k, v in bz))
broken = [(k[4:], fig[k]) for k in sorted(fig) if k.startswith("err.")]
if broken:
    p("\n**Not working in this run** (left out of the tables):\n")
    for k, v in broken:
        p(f"- `{k}`: {v}")
p("")

# 1. getaddrinfo ----------------------------------------------------------------
gai = {}
for path in glob.glob(os.path.join(RAW, "gai-*.lines")):
    key = os.path.basename(path)[4:-6]  # way.mode.fam
    gai[key] = [kv(line) for line in open(path) if line.startswith("ok=")]


def g(way, mode, fam, stat):
    runs = gai.get(f"{way}.{mode}.{fam}")
    return med([num(r, stat) for r in runs]) if runs else None


WAYS = (("glibc", "glibc → dnsmasq on loopback"), ("lay", "laysocks (placeholders)"),
        ("pc", "proxychains4, `proxy_dns`"))
CASES = (("distinct", "4", "distinct names, AF_INET"), ("same", "4", "one name repeated, AF_INET"),
         ("distinct", "any", "distinct names, AF_UNSPEC"), ("same", "any", "one name repeated, AF_UNSPEC"))
if gai:
    nruns = max(len(v) for v in gai.values())
    p("## 1. getaddrinfo latency and throughput (one thread)\n")
    p(f"`bench/gaibench.c seq`: getaddrinfo(name, \"80\", SOCK_STREAM) + freeaddrinfo, timed one by one after 100 "
      f"untimed warm-up calls; up to {nruns} runs of each way and case, interleaved; each figure is the median over the runs. "
      "proxychains-ng's getaddrinfo hook only answers IPv4, so AF_UNSPEC has no proxychains4 row.\n")
    p("| case | way | min µs | median µs | p90 µs | p99 µs | calls/s | errors | first answer |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for mode, fam, label in CASES:
        for w, wl in WAYS:
            runs = gai.get(f"{w}.{mode}.{fam}")
            if not runs:
                continue
            errs = sum(int(r.get("errors", 0)) for r in runs)
            p(f"| {label} | {wl} | {f(g(w, mode, fam, 'min_us'), 2)} | {f(g(w, mode, fam, 'median_us'), 2)} | "
              f"{f(g(w, mode, fam, 'p90_us'), 2)} | {f(g(w, mode, fam, 'p99_us'), 2)} | "
              f"{f(g(w, mode, fam, 'calls_per_s'), 0)} | {errs} | `{runs[0].get('addr', '?')}` |")
    p("")
    p("Ratios (laysocks / peer; below 1 is faster. Throughput ratio: laysocks calls/s ÷ peer calls/s):\n")
    p("| case | median vs glibc | median vs glibc's fastest call | p99 vs glibc | throughput vs glibc | median vs proxychains4 | p99 vs proxychains4 | throughput vs proxychains4 |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, fam, label in CASES:
        if f"lay.{mode}.{fam}" not in gai:
            continue
        cells = []
        best = ratio(g("lay", mode, fam, "median_us"), g("glibc", mode, fam, "min_us"))
        for peer in ("glibc", "pc"):
            for st in ("median_us", "best", "p99_us"):
                if st == "best":
                    if peer == "glibc":
                        cells.append(f"{f(best, 4)}×" if best is not None else "—")
                    continue
                r = ratio(g("lay", mode, fam, st), g(peer, mode, fam, st))
                cells.append(f"{f(r, 4)}×" if r is not None else "—")
            r = ratio(g("lay", mode, fam, "calls_per_s"), g(peer, mode, fam, "calls_per_s"))
            cells.append(f"**{f(r, 1)}×**" if r is not None else "—")
        p(f"| {label} | " + " | ".join(cells) + " |")
    p("")
    names = sorted({k.split(".")[2] for k in fig if k.startswith("sc.")})
    if names:
        p("Syscalls per call (strace -f -c; distinct names, AF_INET; a 2000-call run minus a 1000-call run, divided by 1000):\n")
        p("| syscall | glibc | laysocks | proxychains4 |")
        p("|---|---:|---:|---:|")
        tot = {w: 0.0 for w, _ in WAYS}
        for n in names:
            vals = []
            for w, _ in WAYS:
                v = fig.get(f"sc.{w}.{n}")
                tot[w] += float(v) if v else 0.0
                vals.append(v or "0")
            p(f"| {n} | " + " | ".join(vals) + " |")
        p("| **total** | " + " | ".join(f"**{tot[w]:.2f}**" for w, _ in WAYS) + " |")
        p("")
    q = {w: fig.get(f"queries.{w}") for w, _ in WAYS}
    p(f"Queries dnsmasq answered during each way's runs (its own counters, SIGUSR1): glibc {q['glibc'] or '—'}, "
      f"laysocks {q['lay'] or '—'}, proxychains4 {q['pc'] or '—'}.\n")
    lay_ok = all(g("lay", m, fa, "errors") == 0 for m, fa, _ in CASES if f"lay.{m}.{fa}" in gai)
    addr_ok = all(r.get("addr", "").startswith(("198.18.", "198.19.")) or
                  (fa == "6" and r.get("addr", "").startswith("-,fd6c:6179:736f:636b:"))
                  for key, runs in gai.items() if key.startswith("lay.") for r in runs
                  for fa in [key.split(".")[2]])
    six_ok = all(",fd6c:6179:736f:636b:" in r.get("addr", "")
                 for key, runs in gai.items() if key.startswith("lay.") and key.endswith(".any") for r in runs)
    p(f"- laysocks answered every call: **{check('getaddrinfo: laysocks answers every call', lay_ok, 'errors in the runs' if not lay_ok else 'no errors')}**; "
      f"with placeholders from 198.18.0.0/15: **{check('getaddrinfo: IPv4 answers are placeholders from 198.18.0.0/15', addr_ok, 'first answer of every run')}**; "
      f"AF_UNSPEC also with one from fd6c:6179:736f:636b::/64: **{check('getaddrinfo: AF_UNSPEC answers carry an IPv6 placeholder', six_ok, 'first answer of every AF_UNSPEC run')}**")
    if q["lay"] is not None:
        p(f"- no query reached the resolver under laysocks: **{check('getaddrinfo: no query reaches the resolver under laysocks', q['lay'] == '0', q['lay'] + ' queries')}**")
    p("")

# 2. the name table -------------------------------------------------------------
maps = {}
for path in glob.glob(os.path.join(RAW, "map-*.lines")):
    key = os.path.basename(path)[4:-6]
    runs, cur = [], None
    for line in open(path):
        if line.strip() == "run":
            cur = {}
            runs.append(cur)
        elif line.startswith("phase=") and cur is not None:
            d = kv(line)
            cur[d["phase"]] = d
    maps[key] = runs


def m(key, phase, stat):
    runs = maps.get(key)
    return med([num(r.get(phase, {}), stat) for r in runs]) if runs else None


if maps:
    mm = kv(fig.get("meta.map", ""))
    T = int(mm.get("threads", 16))
    N = int(mm.get("names", 10000))
    BN = int(mm.get("big_names", N))
    BTOT = T * BN
    S = int(mm.get("shared", 1000))
    TOT = T * N
    cpus = int(fig.get("meta.cpus", "2"))
    p(f"## 2. The name table under {T} threads\n")
    p(f"`bench/gaibench.c threads` under the launcher, hints family `{mm.get('family', '?')}`: {T} threads start together, "
      f"each resolves names of its own (**own**), then all resolve the same {S:,} names in the same order (**shared**), "
      f"then each resolves its own names again (**again**). \"big\": `-c` a config with `dns_names = {mm.get('big', '?')}` "
      f"(all that the default 198.18.0.0/15 has placeholders for), {BN:,} names per thread, {BTOT:,} in all; 1 and 2 threads "
      f"do the same {BTOT:,} names. \"default\": `-x` alone (65,536 names), {N:,} names per thread, {TOT:,} in all. "
      "\"numeric\": the same harness with 5 times the calls (they are short), "
      "no layer, numeric addresses and `AI_NUMERICHOST` — glibc's path with no shared state, the machine's ceiling for "
      f"scaling. {mm.get('runs', '?')} runs of each timed configuration; medians over the runs. "
      "vcsw: voluntary context switches of the process during the phase (a thread that waits on a lock sleeps: a "
      "convoy shows here); cpu: user + system CPU per call.\n")
    p("| configuration | phase | calls/s | median µs | p99 µs | max µs | cpu µs/call | sys µs/call | vcsw | ivcsw | ok | EAI_MEMORY |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    def sysc(key, ph):  # system CPU µs per call, median over runs
        vals = []
        for run in maps.get(key) or []:
            d = run.get(ph, {})
            s, c = num(d, "sys_s"), num(d, "calls")
            if s is not None and c:
                vals.append(s / c * 1e6)
        return med(vals)

    rows = (("big16", f"big, {T} threads"), ("big2", "big, 2 threads"), ("big1", "big, 1 thread"),
            ("def16", f"default bound, {T} threads"), ("num16", f"numeric reference, {T} threads"),
            ("num1", "numeric reference, 1 thread"))
    for key, label in rows:
        if key not in maps:
            continue
        for ph in ("own", "shared", "again"):
            if key.startswith("num") and ph == "shared":
                continue
            p(f"| {label} | {ph} | {f(m(key, ph, 'calls_per_s'), 0)} | {f(m(key, ph, 'median_us'), 2)} | "
              f"{f(m(key, ph, 'p99_us'), 2)} | {f(m(key, ph, 'max_us'), 0)} | {f(m(key, ph, 'cpu_us_per_call'), 3)} | "
              f"{f(sysc(key, ph), 3)} | {f(m(key, ph, 'vcsw'), 0)} | {f(m(key, ph, 'ivcsw'), 0)} | "
              f"{f(m(key, ph, 'ok'), 0)} | {f(m(key, ph, 'eai_memory'), 0)} |")
    p("")
    sc = ratio(m("big16", "own", "calls_per_s"), m("big1", "own", "calls_per_s"))
    sc2 = ratio(m("big2", "own", "calls_per_s"), m("big1", "own", "calls_per_s"))
    sca = ratio(m("big16", "again", "calls_per_s"), m("big1", "again", "calls_per_s"))
    sca2 = ratio(m("big2", "again", "calls_per_s"), m("big1", "again", "calls_per_s"))
    scs = ratio(m("big16", "shared", "calls_per_s"), m("big1", "shared", "calls_per_s"))
    scn = ratio(m("num16", "own", "calls_per_s"), m("num1", "own", "calls_per_s"))
    ideal = min(T, cpus)
    if sc is not None:
        p(f"- Scaling, total throughput {T} threads / 1 thread (ideal on {cpus} cores: {ideal}×; per thread the ideal is "
          f"{ideal}/{T} = {ideal / T:.3f}×):")
        p(f"  - own names, every call an insert: **{f(sc, 2)}×** (per thread {f(sc / T, 3)}×; 2 threads {f(sc2, 2)}×)")
        p(f"  - own names again, every call a lookup of a known name: **{f(sca, 2)}×** (per thread {f(sca / T if sca else None, 3)}×; 2 threads {f(sca2, 2)}×)")
        p(f"  - shared names, {T} threads racing to insert the same name: {f(scs, 2)}×")
        p(f"  - numeric reference (no table): {f(scn, 2)}×")
        conv_ok = sc >= 1.0 and (sca or 0) >= 1.0
        p(f"  No lock convoy — {T} threads together are not slower than one (a convoy makes more threads slower "
          f"than one): **{check(f'table: no lock convoy ({T} threads not slower than 1)', conv_ok, f'inserts {sc:.2f}×, lookups {f(sca, 2)}× (ideal {ideal}×)')}**")
        cpu16, cpu1 = m("big16", "own", "cpu_us_per_call"), m("big1", "own", "cpu_us_per_call")
        p(f"  CPU per insert {f(cpu16, 3)} µs with {T} threads against {f(cpu1, 3)} µs alone ({f(ratio(cpu16, cpu1), 2)}×); "
          f"voluntary context switches (a thread sleeping) {f(m('big16', 'own', 'vcsw'), 0)} during the {BTOT:,} inserts, "
          f"{f(m('big16', 'again', 'vcsw'), 0)} during the lookups.")
        p(f"- Per-call p99 with {T} threads: {f(m('big16', 'own', 'p99_us'), 2)} µs inserting, {f(m('big16', 'again', 'p99_us'), 2)} µs looking up, "
          f"{f(m('big16', 'shared', 'p99_us'), 2)} µs shared (1 thread: {f(m('big1', 'own', 'p99_us'), 2)} / {f(m('big1', 'again', 'p99_us'), 2)} µs; "
          f"numeric reference with {T} threads: {f(m('num16', 'own', 'p99_us'), 2)} µs).")
    p("")

    def runs_of(key):
        return maps.get(key, [])

    big = runs_of("big16") + runs_of("big1") + runs_of("big2")
    if big:
        bad = []
        for r in big:
            c = r.get("check", {})
            th = int(r.get("start", {}).get("threads", T))
            tot = th * int(r.get("start", {}).get("per_thread", N))
            if int(c.get("own_ok", -1)) != tot:
                bad.append(f"{th} threads: {c.get('own_ok')} of {tot} succeeded")
            for k in ("changed", "lost", "dup_v4", "dup_v6", "not_placeholder", "shared_split"):
                if int(c.get(k, 1)) != 0:
                    bad.append(f"{th} threads: {k}={c.get(k)}")
            if int(c.get("shared_names_ok", -1)) != S:
                bad.append(f"{th} threads: shared names ok {c.get('shared_names_ok')} of {S}")
            sizes = {r.get(ph, {}).get("file_size") for ph in ("start", "own", "shared", "again")}
            if len(sizes) != 1:
                bad.append(f"{th} threads: names file size changed {sorted(map(str, sizes))}")
        c0 = big[0].get("check", {})
        st = big[0].get("start", {})
        p(f"- Big table: every name succeeded, kept its address when resolved again, no two names share a placeholder, "
          f"every thread got the same address for each shared name: "
          f"**{check('table, big: every name succeeds, stable and distinct', not bad, '; '.join(bad[:4]) or f'{len(big)} runs (16, 2 and 1 threads), {BTOT:,} + {S:,} names each')}**. "
          f"(First run: {c0.get('own_ok')} ok, {c0.get('distinct_v4')} distinct IPv4 and {c0.get('distinct_v6')} distinct IPv6 placeholders, "
          f"names file `{st.get('names_file')}` {st.get('file_size')} bytes, {st.get('file_blocks')} blocks at start, "
          f"{big[0].get('again', {}).get('file_blocks')} at the end.)")
    # slot accounting: a probe name after a phase gets the next free slot
    acc = []
    for key, label in (("big16", f"{T} threads"), ("big2", "2 threads"), ("big1", "1 thread")):
        used = []
        for r in runs_of(key):
            po, ps = num(r.get("own", {}), "probe_slot"), num(r.get("shared", {}), "probe_slot")
            ok_own = num(r.get("check", {}), "own_ok")
            if po is not None and ps is not None:
                used.append((po - ok_own, ps - po - 1))
        if used:
            acc.append(f"{label}: own phase wasted {', '.join(str(int(a)) for a, _ in used)}; "
                       f"the {S:,} shared names took {', '.join(f'{int(b):,}' for _, b in used)} slots")
    if acc:
        p(f"- Slots handed out (a new name after each phase gets the next free slot; one figure per run): "
          + "; ".join(acc) + ". A slot taken by a thread that then loses the race to publish the same name "
          "stays used: under contention a bounded table holds fewer names than its capacity.")
    for key in ("big16", "big1", "def16"):
        if f"map.{key}.stderr_lines" in fig:
            p(f"- stderr of the `{key}` runs: {fig[f'map.{key}.stderr_lines']} line(s) in the last run"
              + (f": `{fig[f'map.{key}.stderr_first']}`" if fig.get(f"map.{key}.stderr_first") else ""))
    d = runs_of("def16")
    if d:
        r = d[0]
        c = r.get("check", {})
        st, own, again, sh = (r.get(k, {}) for k in ("start", "own", "again", "shared"))
        cap = 65536
        ok_n = int(c.get("own_ok", -1))
        nomem = int(c.get("own_eai_memory", -1))
        exact = ok_n == cap and nomem == TOT - cap
        p(f"- Default bound: **{ok_n:,}** distinct names succeeded, {nomem:,} failed with EAI_MEMORY "
          f"(other errors: {own.get('other_errors')} {own.get('other_error', '')}), of {TOT:,}: "
          f"**{check('table, default: exactly 65,536 names succeed, the rest EAI_MEMORY', exact, f'{ok_n} ok, {nomem} EAI_MEMORY')}**.")
        stable = int(c.get("grew", 1)) == 0 and int(c.get("changed", 1)) == 0 and int(c.get("lost", 1)) == 0 \
            and int(c.get("dup_v4", 1)) == 0 and int(c.get("dup_v6", 1)) == 0
        grew_fig = f"grew {c.get('grew')}, lost {c.get('lost')}, changed {c.get('changed')}, shared ok {sh.get('ok')}"
        p(f"  Resolved again: names that had failed and now succeed (growth past the bound) {c.get('grew')}, names that "
          f"lost or changed their address {c.get('lost')}/{c.get('changed')}; shared names (asked for after the table was full) "
          f"ok {sh.get('ok')}, EAI_MEMORY {sh.get('eai_memory')}: "
          f"**{check('table, default: no growth past the bound, no name loses its address', stable and sh.get('ok') == '0', grew_fig)}**.")
        sizes = [(lbl, x.get("file_size"), x.get("file_blocks")) for lbl, x in
                 (("start", st), ("own", own), ("shared", sh), ("again", again))]
        full = (c.get("full_size"), c.get("full_blocks"))
        same = full[0] is not None and all(s == full[0] for _, s, _ in sizes[1:]) and all(b == full[1] for _, _, b in sizes[1:])
        p(f"  Names file `{st.get('names_file')}`, size/blocks: at start {sizes[0][1]}/{sizes[0][2]}, "
          f"at the first EAI_MEMORY {full[0]}/{full[1]} (after {c.get('calls_before_full')} calls), after own {sizes[1][1]}/{sizes[1][2]}, "
          f"after shared {sizes[2][1]}/{sizes[2][2]}, after again {sizes[3][1]}/{sizes[3][2]}: "
          f"**{check('table, default: the names file does not change once full', same, f'{full[0]} bytes / {full[1]} blocks when full, {sizes[3][1]} / {sizes[3][2]} at the end')}**.")
    p("")

if summary:
    p("## Checks\n")
    p("| check | figure | verdict |")
    p("|---|---|---|")
    for name, figure, v in summary:
        p(f"| {name} | {figure} | **{v}** |")
print("\n".join(out))
