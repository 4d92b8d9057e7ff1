#!/usr/bin/env python3
"""Turns the raw measurements of benches/load/compare.sh into tables, prints
them and writes benches/RESULTS.md. Everything after the NOTES marker in an
existing RESULTS.md (hand-written interpretation) is kept."""

import argparse
import os
import re
import statistics
import sys

NOTES = "<!-- notes: everything below this line is hand-written and kept across runs -->"
SERVERS = ["nginx", "haproxy", "caddy", "portcullis"]
NAMES = {"nginx": "nginx", "haproxy": "HAProxy", "caddy": "Caddy", "portcullis": "portcullis"}
MODES = [
    ("tls", "TLS proxy, HTTP/1.1, 13-byte body (wrk)"),
    ("policy", "TLS + policy chain, HTTP/1.1, 13-byte body (wrk)"),
    ("16k", "TLS proxy, HTTP/1.1, 16 KiB body (wrk)"),
    ("h2", "TLS proxy, HTTP/2, 13-byte body (h2load)"),
]


def read_tsv(path, header=True):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if header and rows:
        keys = rows[0]
        return [dict(zip(keys, r)) for r in rows[1:]]
    return rows


def ratio(a, b):
    return a / b if b else float("nan")


def fmt_ratio(r):
    return "n/a" if r != r else f"{r:.2f}x"


def summarise(raw, rss):
    out = {}
    for mode, _ in MODES:
        for s in SERVERS:
            rows = [r for r in raw if r["mode"] == mode and r["server"] == s]
            if not rows:
                continue
            cpu_us = [
                1e6 * float(r["cpu_s"]) / float(r["requests"])
                for r in rows
                if float(r["requests"]) > 0
            ]
            out[(mode, s)] = {
                "rps": statistics.median(float(r["rps"]) for r in rows),
                "p50": statistics.median(float(r["p50_ms"]) for r in rows),
                "p99": statistics.median(float(r["p99_ms"]) for r in rows),
                "cpu": statistics.median(cpu_us) if cpu_us else float("nan"),
                "busy": statistics.median(float(r["busy"]) for r in rows),
                "errors": sum(int(float(r["errors"])) for r in rows),
                "rps_all": [float(r["rps"]) for r in rows],
                "rss": float(rss.get((mode, s), "nan")) / 1024,
            }
    return out


def mode_table(summary, mode):
    base = summary.get((mode, "nginx"))
    lines = [
        "| server | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | core busy | errors | req/s per round |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in SERVERS:
        v = summary.get((mode, s))
        if not v:
            continue

        def cell(key, fmt):
            val = v[key]
            r = ratio(val, base[key]) if base else float("nan")
            return f"{val:{fmt}} ({fmt_ratio(r)})"

        rounds = " / ".join(f"{x:.0f}" for x in v["rps_all"])
        lines.append(
            f"| {NAMES[s]} | {cell('rps', '.0f')} | {cell('p50', '.2f')} | {cell('p99', '.2f')} "
            f"| {cell('cpu', '.1f')} | {cell('rss', '.1f')} | {v['busy']:.0f} % | {v['errors']} | {rounds} |"
        )
    return "\n".join(lines)


CATEGORIES = [
    ("kernel: syscalls, loopback TCP, epoll, scheduling", lambda d, s: "kernel" in d),
    ("TLS record crypto (AES-GCM, ChaCha, GHASH)", lambda d, s: re.search(r"aes|gcm|ghash|chacha|poly1305|gfmul|vpaes|bsaes", s, re.I)),
    ("SHA-256 / HMAC (session cookie; handshakes)", lambda d, s: re.search(r"sha256|sha2::|hmac", s, re.I)),
    ("rustls (record layer, state machine)", lambda d, s: "rustls" in s),
    ("allocator (malloc/free/realloc)", lambda d, s: re.search(r"malloc|free|realloc|calloc|_int_|tcache|arena|mi_|alloc::alloc|__rdl_|__rust_alloc|__rust_dealloc|sdallocx|je_", s)),
    ("memcpy/memmove/memset", lambda d, s: re.search(r"memcpy|memmove|memset|memcmp|bcmp", s)),
    ("HTTP parsing and header maps (httparse, http, pingora-http)", lambda d, s: re.search(r"httparse|http::header|HeaderMap|HeaderName|HeaderValue|pingora_http|RequestHeader|ResponseHeader|case_header|header", s)),
    ("access log (serde_json, stdout)", lambda d, s: re.search(r"serde_json|access_log|Stdout|stdout|LineWriter|fmt::write|core::fmt", s)),
    ("rate limit (governor, dashmap)", lambda d, s: re.search(r"governor|dashmap|ratelimit", s, re.I)),
    ("tokio runtime, tasks, timers", lambda d, s: re.search(r"tokio|mio::", s)),
    ("pingora proxy / connection pool", lambda d, s: re.search(r"pingora", s)),
    ("portcullis code", lambda d, s: re.search(r"portcullis|policies::|gateway::", s)),
]


def categorise(path):
    totals = {}
    if not os.path.exists(path):
        return []
    for line in open(path):
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[.\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        cat = "other"
        for name, test in CATEGORIES:
            if test(dso, sym):
                cat = name
                break
        totals[cat] = totals.get(cat, 0.0) + pct
    return sorted(totals.items(), key=lambda kv: -kv[1])


def main():
    ap = argparse.ArgumentParser()
    for k in ["work", "out", "date", "commit", "machine", "versions", "pinning"]:
        ap.add_argument("--" + k, required=True)
    for k in ["secs", "rounds", "conns", "idle", "nofile", "elapsed"]:
        ap.add_argument("--" + k, type=int, required=True)
    a = ap.parse_args()
    w = a.work

    raw = read_tsv(os.path.join(w, "raw.tsv"))
    rss = {(m, s): v for m, s, v in read_tsv(os.path.join(w, "rss.tsv"), header=False)}
    summary = summarise(raw, rss)
    loads = [l.strip() for l in open(os.path.join(w, "loadavg"))]
    run_loads = [float(r["loadavg"]) for r in raw]
    ciphers = [l.strip() for l in open(os.path.join(w, "ciphers"))] if os.path.exists(os.path.join(w, "ciphers")) else []
    idle = read_tsv(os.path.join(w, "idle.tsv"), header=False)
    redis = open(os.path.join(w, "redis.txt")).read().strip() if os.path.exists(os.path.join(w, "redis.txt")) else ""
    store = open(os.path.join(w, "store.txt")).read().strip() if os.path.exists(os.path.join(w, "store.txt")) else ""
    profile = open(os.path.join(w, "profile.txt")).read().rstrip() if os.path.exists(os.path.join(w, "profile.txt")) else ""
    cats = categorise(os.path.join(w, "profile-all.txt"))

    o = []
    o.append("# Load comparison: portcullis, nginx, HAProxy, Caddy")
    o.append("")
    o.append(f"Generated by `benches/load/compare.sh` on {a.date} at commit {a.commit} "
             f"in {a.elapsed // 60} min {a.elapsed % 60} s. Method: `benches/README.md`.")
    o.append("")
    o.append(f"- Machine: {a.machine}.")
    o.append(f"- Versions: {a.versions}.")
    o.append(f"- TLS as negotiated (openssl s_client): {'; '.join(ciphers)}.")
    o.append(f"- Pinning: {a.pinning}.")
    if run_loads:
        o.append(f"- Load average (1 min): {loads[0].split()[0]} at the start, "
                 f"{min(run_loads):.2f}–{max(run_loads):.2f} during the runs "
                 f"(median {statistics.median(run_loads):.2f}), {loads[-1].split()[0]} at the end. "
                 "On 2 cores anything above about 2 means other processes (here: other agents' "
                 "builds) competed for the cores: absolute numbers are depressed and noisy; the ratios "
                 "from interleaved rounds are what to read.")
    o.append(f"- Each cell is the median of {a.rounds} interleaved rounds of {a.secs} s "
             f"(wrk -t1 -c{a.conns}; h2load -t1 -c16 -m8); ratios are to nginx in the same mode "
             "(for req/s higher is better, for the rest lower is better). \"core busy\" is the "
             "proxy's CPU time over wall time: near 100 % means the proxy's core was the bottleneck.")
    o.append("")

    for mode, title in MODES:
        if any(k[0] == mode for k in summary):
            o.append(f"## {title}")
            o.append("")
            o.append(mode_table(summary, mode))
            o.append("")

    if idle:
        o.append(f"## RSS with {a.idle} idle TLS keep-alive connections")
        o.append("")
        o.append("A fresh instance of each (the `tls` config); `idle_conns.py` opens the connections "
                 "(TLS 1.3, 200 handshakes at a time), makes one request on each, and holds them. "
                 f"ulimit -n {a.nofile}.")
        o.append("")
        o.append("| server | connections held | established at server | RSS before MiB | RSS held MiB | VmHWM MiB | KiB per connection | VmHWM ratio to nginx |")
        o.append("|---|---|---|---|---|---|---|---|")
        base = next((r for r in idle if r[0] == "nginx"), None)
        for s, held, estab, before, now, hwm in idle:
            per = (float(now) - float(before)) / max(int(held), 1)
            r = ratio(float(hwm), float(base[5])) if base else float("nan")
            o.append(f"| {NAMES[s]} | {held} | {estab} | {float(before)/1024:.1f} | {float(now)/1024:.1f} "
                     f"| {float(hwm)/1024:.1f} | {per:.1f} | {fmt_ratio(r)} |")
        o.append("")

    # Targets.
    o.append("## Targets of issue 8")
    o.append("")
    o.append("| target | measured | met |")
    o.append("|---|---|---|")

    def yes(b):
        return "yes" if b else "**no**"

    pp, np_ = summary.get(("policy", "portcullis")), summary.get(("policy", "nginx"))
    if pp and np_:
        r = ratio(pp["rps"], np_["rps"])
        o.append(f"| TLS + policy chain: req/s ≥ 1.1× nginx (TLS + limit_req + headers) | {r:.2f}x | {yes(r >= 1.1)} |")
        o.append(f"| … with p99 no worse than nginx's | {pp['p99']:.2f} ms vs {np_['p99']:.2f} ms | {yes(pp['p99'] <= np_['p99'])} |")
    pt = summary.get(("tls", "portcullis"))
    if pp and pt:
        cost = 1 - ratio(pp["rps"], pt["rps"])
        o.append(f"| The policy chain costs ≤ 5 % of portcullis's plain TLS throughput | {100 * cost:.1f} % "
                 f"({pp['rps']:.0f} vs {pt['rps']:.0f} req/s) | {yes(cost <= 0.05)} |")
    if idle:
        d = {r[0]: r for r in idle}
        if "nginx" in d and "portcullis" in d:
            r = ratio(float(d["portcullis"][5]), float(d["nginx"][5]))
            o.append(f"| Peak RSS with {a.idle} idle TLS connections ≤ 1.5× nginx | {r:.2f}x "
                     f"({float(d['portcullis'][5])/1024:.0f} vs {float(d['nginx'][5])/1024:.0f} MiB) | {yes(r <= 1.5)} |")
    if redis:
        m = re.search(r"redis/memory ([0-9.]+)", redis)
        if m:
            r = float(m.group(1))
            o.append(f"| Redis rate-limit store ≥ 80 % of the memory store (`ratelimit_store.sh 5 3`: {redis}) | {100 * r:.0f} % | {yes(r >= 0.8)} |")
    for backend in ["sqlite", "postgres"]:
        m = re.search(backend + r" / memory: ([0-9.]+)", store)
        if m:
            r = float(m.group(1))
            o.append(f"| policy chain with the {backend} identity store ≥ 95 % of memory-only (`store.sh`, same run) | {100 * r:.0f} % | {yes(r >= 0.95)} |")
    o.append("")
    if store:
        o.append("## Identity store: the policy chain, memory-only against SQLite and PostgreSQL")
        o.append("")
        o.append("```")
        o.append(store)
        o.append("```")
        o.append("")

    if profile:
        o.append("## Profile: portcullis in the policy mode")
        o.append("")
        if cats:
            o.append("Self time grouped by what the code does (every symbol, matched by name; "
                     "`other` is what no pattern claimed):")
            o.append("")
            o.append("| share | category |")
            o.append("|---|---|")
            for name, pct in cats:
                o.append(f"| {pct:.1f} % | {name} |")
            o.append("")
        o.append("```")
        o.append(profile)
        o.append("```")
        o.append("")

    o.append("## Raw rounds")
    o.append("")
    o.append("| round | mode | server | req/s | p50 ms | p99 ms | requests | errors | CPU s | core busy | load |")
    o.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in raw:
        o.append(f"| {r['round']} | {r['mode']} | {NAMES[r['server']]} | {float(r['rps']):.0f} | {r['p50_ms']} | {r['p99_ms']} "
                 f"| {r['requests']} | {r['errors']} | {r['cpu_s']} | {r['busy']} % | {r['loadavg']} |")
    o.append("")

    generated = "\n".join(o)
    print(generated)

    notes = ""
    if os.path.exists(a.out):
        old = open(a.out).read()
        if NOTES in old:
            notes = old.split(NOTES, 1)[1]
    if not notes.strip():
        notes = "\n\n## Notes\n\n(Interpretation of the run goes here.)\n"
    with open(a.out, "w") as f:
        f.write(generated.rstrip() + "\n\n" + NOTES + notes)


if __name__ == "__main__":
    sys.exit(main())
