#!/usr/bin/env python3
"""SMTP client and report for bench/listener.sh (the loopback-listener
benchmark): the same client drives every system under test.

  listener.py send HOST PORT N CONNS TAG OUT
      N messages (~2 KB each, distinct) over CONNS concurrent SMTP
      connections (smtplib, one EHLO per connection, then MAIL/RCPT/DATA
      per message, QUIT at the end). Every message carries
      Message-ID <TAG.INDEX@listenbench.invalid>. Writes OUT: a first line
      "# start=T0 end=T1 ok=K failed=F" (T0 = just before the first
      connect, T1 = the last 250 to a final dot) and one line
      "INDEX T250" per accepted message (wall clock, seconds). Exits 1 if
      any message was refused or a connection failed.

  listener.py count ARRIVALS TAG
      How many messages of TAG the sink has recorded (its --arrivals file).

  listener.py report ARRIVALS RESULT...
      For each client result file (name: SYSTEM.CONNS.ROUND.txt): client
      rate (messages / (T1 - T0)), end-to-end rate (messages / (last
      arrival at the sink - T0)) and the latency from the client's 250 to
      the sink's 250 (median, p90, p99, max). Then one table with medians
      over rounds and the Postern/Postfix ratios.
"""

import os
import smtplib
import socket
import statistics
import sys
import threading
import time

DOMAIN = "listenbench.invalid"
TIMEOUT = 30  # seconds, every socket operation of the client


def message(tag, i):
    lines = [
        "From: Bench Sender <sender@app.example.net>",
        "To: Bench Sink <rcpt@sink.example.org>",
        f"Subject: listener benchmark {tag} message {i}",
        f"Message-ID: <{tag}.{i}@{DOMAIN}>",
        "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
    ]
    body_line = f"{tag} {i} " + "lorem ipsum dolor sit amet consectetur " * 2
    body_line = body_line[:72]
    while sum(len(x) + 2 for x in lines) < 2048:
        lines.append(body_line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def send(host, port, n, conns, tag, out):
    shares = [list(range(k, n, conns)) for k in range(conns)]
    bodies = {i: message(tag, i) for i in range(n)}
    done = {}
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(conns + 1)

    def worker(indices):
        try:
            barrier.wait(timeout=TIMEOUT)
        except threading.BrokenBarrierError:
            return
        try:
            c = smtplib.SMTP(host, port, local_hostname="app.example.net", timeout=TIMEOUT)
            c.ehlo()
            for i in indices:
                refused = c.sendmail("sender@app.example.net", ["rcpt@sink.example.org"], bodies[i])
                t = time.time()
                if refused:
                    with lock:
                        errors.append(f"{i}: refused {refused}")
                    continue
                with lock:
                    done[i] = t
            c.quit()
        except (smtplib.SMTPException, OSError) as e:
            with lock:
                errors.append(f"connection {indices[:1]}: {e!r}")

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in shares]
    for t in threads:
        t.start()
    t0 = time.time()
    barrier.wait(timeout=TIMEOUT)
    deadline = time.monotonic() + 600
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        errors.append("client threads still running after 600 s")
    t1 = max(done.values()) if done else t0
    with open(out, "w") as f:
        f.write(f"# start={t0:.6f} end={t1:.6f} ok={len(done)} failed={n - len(done)}\n")
        for i in sorted(done):
            f.write(f"{i} {done[i]:.6f}\n")
    for e in errors[:5]:
        print(f"listener.py: {e}", file=sys.stderr)
    rate = len(done) / (t1 - t0) if t1 > t0 else 0.0
    print(f"{tag}: {len(done)}/{n} accepted in {t1 - t0:.3f} s = {rate:.1f} msg/s")
    return 0 if len(done) == n and not errors else 1


def arrivals(path, tag=None):
    """Message-ID -> arrival time at the sink (first one wins)."""
    got = {}
    prefix = f"<{tag}." if tag else None
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 2:
                    continue
                if prefix and not parts[1].startswith(prefix):
                    continue
                got.setdefault(parts[1], float(parts[0]))
    except FileNotFoundError:
        pass
    return got


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def one_result(path, arr):
    name = os.path.basename(path)[: -len(".txt")]
    system, conns, rnd = name.split(".")
    tag = name.replace(".", "-")
    with open(path) as f:
        head = f.readline().split()
        meta = dict(x.split("=", 1) for x in head[1:])
        sent = {}
        for line in f:
            i, t = line.split()
            sent[int(i)] = float(t)
    t0, t1 = float(meta["start"]), float(meta["end"])
    lat = []
    last = t0
    for i, t in sent.items():
        a = arr.get(f"<{tag}.{i}@{DOMAIN}>")
        if a is None:
            continue
        lat.append((a - t) * 1000.0)
        last = max(last, a)
    n = len(sent)
    return {
        "system": system,
        "conns": int(conns),
        "round": int(rnd),
        "sent": n,
        "arrived": len(lat),
        "client_rate": n / (t1 - t0) if t1 > t0 else 0.0,
        "e2e_rate": len(lat) / (last - t0) if last > t0 else 0.0,
        "lat": lat,
    }


def report(arr_path, files):
    arr = arrivals(arr_path)
    rows = [one_result(p, arr) for p in sorted(files)]
    print("| system | conns | round | accepted | at sink | client msg/s | end-to-end msg/s "
          "| latency p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["conns"], r["system"], r["round"])):
        lat = r["lat"]
        print(f"| {r['system']} | {r['conns']} | {r['round']} | {r['sent']} | {r['arrived']} "
              f"| {r['client_rate']:.0f} | {r['e2e_rate']:.0f} | {pct(lat, 50):.1f} "
              f"| {pct(lat, 90):.1f} | {pct(lat, 99):.1f} | {max(lat) if lat else float('nan'):.1f} |")
    print()
    groups = {}
    for r in rows:
        groups.setdefault((r["system"], r["conns"]), []).append(r)

    def med(system, conns, key):
        g = groups.get((system, conns))
        if not g:
            return None
        if key == "client_rate" or key == "e2e_rate":
            return statistics.median(x[key] for x in g)
        pooled = [v for x in g for v in x["lat"]]
        return pct(pooled, {"p50": 50, "p90": 90, "p99": 99}[key]) if pooled else None

    order = {"postern": 0, "postern-noguard": 1, "postfix": 9}
    systems = sorted({s for s, _ in groups}, key=lambda s: (order.get(s, 5), s))
    base = "postfix" if "postfix" in systems else None
    others = [s for s in systems if s != base] if base else []
    print("Medians over rounds (rates) and percentiles pooled over rounds (latency)"
          + ("; ratio = system / Postfix (rates: above 1 means faster than Postfix; "
             "latency: below 1 means faster than Postfix)." if base else "."))
    print()
    print("| metric | conns | " + " | ".join(systems) + " |"
          + "".join(f" {s}/postfix |" for s in others))
    print("|---|---:|" + "---:|" * (len(systems) + len(others)))
    failed = any(r["arrived"] != r["sent"] for r in rows)
    for key, label, fmt in [("client_rate", "client msg/s", "{:.0f}"),
                            ("e2e_rate", "end-to-end msg/s", "{:.0f}"),
                            ("p50", "latency 250→sink p50 ms", "{:.1f}"),
                            ("p90", "latency 250→sink p90 ms", "{:.1f}"),
                            ("p99", "latency 250→sink p99 ms", "{:.1f}")]:
        for conns in sorted({c for _, c in groups}):
            vals = [med(s, conns, key) for s in systems]
            cells = ["-" if v is None else fmt.format(v) for v in vals]
            line = f"| {label} | {conns} | " + " | ".join(cells) + " |"
            b = med(base, conns, key) if base else None
            for s in others:
                a = med(s, conns, key)
                line += f" {a / b:.2f} |" if a and b else " - |"
            print(line)
    if failed:
        print()
        print("WARNING: some accepted messages never reached the sink (see the 'at sink' column).")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "send" and len(argv) == 8:
        return send(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6], argv[7])
    if len(argv) == 4 and argv[1] == "count":
        print(len(arrivals(argv[2], argv[3])))
        return 0
    if len(argv) >= 4 and argv[1] == "report":
        return report(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, ValueError) as e:
        print(f"listener.py: {e}", file=sys.stderr)
        sys.exit(1)
