"""ctest driver for scripts/experiment: real p2ptrain runs, real files, real signals.

Usage: harness_test.py CASE P2PTRAIN SOURCE_DIR   (CASE: end_to_end, failed_point, resume,
bad_file, netns, offload). Exits 0 on success, 1 with the failed check on stderr, 77 when skipped.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CASE, BINARY, SRC = sys.argv[1], sys.argv[2], sys.argv[3]
EXPERIMENT = os.path.join(SRC, "scripts", "experiment")
FIXTURES = os.path.join(SRC, "tests", "experiments")


def fail(msg):
    print(f"FAIL ({CASE}): {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def run(args, timeout=500):
    p = subprocess.run([EXPERIMENT, "--binary", BINARY, *args], capture_output=True, text=True, timeout=timeout)
    sys.stderr.write(p.stderr[-3000:])
    return p


def rows_of(out):
    with open(os.path.join(out, "results.csv"), newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def documented_metrics():
    """Every field docs/metrics.md lists (first column of its tables, and the offload list)."""
    text = open(os.path.join(SRC, "docs", "metrics.md")).read()
    text = text[text.index("## Fields"):]
    text = text[:text.index("## The study's names")] + text[text.index("offload fields"):]
    fields = set()
    for line in text.splitlines():
        m = re.match(r"\|\s*(`[^|]+)\|", line)
        if m:
            fields.update(re.findall(r"`([a-z_0-9]+)`", m.group(1)))
    offload = re.search(r"offload fields \(([^)]*)\)", text.replace("\n", " "))
    if offload:
        fields.update(re.findall(r"`([a-z_0-9]+)`", offload.group(1)))
    return fields


def end_to_end(tmp):
    out = os.path.join(tmp, "tiny")
    p = run(["run", os.path.join(FIXTURES, "tiny.yaml"), "--out", out])
    check(p.returncode == 0, f"experiment run exited {p.returncode}")
    cols, rows = rows_of(out)
    missing = sorted(documented_metrics() - set(cols))
    check(not missing, f"CSV lacks documented metric columns {missing}")
    for c in ("experiment", "point", "rep", "status", "error", "cfg_peers", "cfg_model", "cfg_epochs"):
        check(c in cols, f"CSV lacks column {c}")
    by_point = {}
    for r in rows:
        by_point.setdefault(r["point"], []).append(r)
    check(set(by_point) == {"peers-1_r1", "peers-2_r1"}, f"CSV points {sorted(by_point)}")
    check(sorted(r["rank"] for r in by_point["peers-2_r1"]) == ["0", "1"], "2-peer point lacks a row per rank")
    check(len(by_point["peers-1_r1"]) == 1, "1-peer point: expected one row (rank 0, epoch 1)")
    for r in rows:
        check(r["status"] == "ok" and r["epoch"] == "1", f"row {r['point']} rank {r['rank']}: {r['status']} {r['error']}")
        check(0.0 <= float(r["test_accuracy"]) <= 1.0, "test_accuracy not a fraction")
        check(float(r["epoch_s"]) > 0, "epoch_s not positive")
        check(r["cfg_peers"] == r["size"], "config column disagrees with the peer's own size")
    hashes = {r["param_hash"] for r in by_point["peers-2_r1"]}
    check(len(hashes) == 1, "the two peers' param_hash differ in the CSV")
    for stem in ("fig1-breakdown", "fig2-accuracy", "fig3-cost"):
        for ext in ("png", "svg"):
            path = os.path.join(out, "figures", f"{stem}.{ext}")
            check(os.path.isfile(path) and os.path.getsize(path) > 1000, f"figure {path} missing or empty")
    report = open(os.path.join(out, "report.md")).read()
    for pid in by_point:
        check(pid in report, f"report.md does not name point {pid}")
    check("figures/fig1-breakdown.png" in report, "report.md does not embed the figures")
    for pid in by_point:
        raw = os.path.join(out, "points", pid, "raw", "rank-0.jsonl")
        check(json.loads(open(raw).readline())["epoch"] == 1, f"raw JSON lines of {pid} not kept")


def failed_point(tmp):
    out = os.path.join(tmp, "failing")
    p = run(["run", os.path.join(FIXTURES, "failing.yaml"), "--out", out])
    check(p.returncode == 0, f"a failed point must not stop the sweep (exit {p.returncode})")
    _, rows = rows_of(out)
    status = {r["point"]: r for r in rows}
    bad, good = status.get("optimizer-nosuchoptimizer_r1"), status.get("optimizer-sgd_r1")
    check(bad is not None and bad["status"] == "failed", "the bad point is not recorded as failed in the CSV")
    check("optimizer" in bad["error"], f"the failure does not say what was wrong: {bad['error']!r}")
    check(good is not None and good["status"] == "ok", "the point after the failed one did not run")
    report = open(os.path.join(out, "report.md")).read()
    check("Failed points" in report and "optimizer-nosuchoptimizer_r1" in report, "report does not list the failure")


def resume(tmp):
    out = os.path.join(tmp, "resume")
    cmd = [EXPERIMENT, "--binary", BINARY, "run", os.path.join(FIXTURES, "resume.yaml"), "--out", out]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = os.path.join(out, "points", "compression-none_r1", "status.json")
    deadline = time.monotonic() + 300
    while not os.path.exists(first):  # block until the first point has finished, with a deadline
        if proc.poll() is not None:
            fail(f"sweep ended before the first point finished: {proc.stderr.read()[-2000:]}")
        check(time.monotonic() < deadline, "first point not finished within 300 s")
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=120)
    sys.stderr.write(err[-2000:])
    check(proc.returncode == 130, f"interrupted sweep exited {proc.returncode}, expected 130")
    check("interrupted" in err, "the interrupted sweep does not say it was interrupted")
    before = json.load(open(first))
    all_points = {"compression-none_r1", "compression-qsgd-bits-4_r1", "compression-topk-ratio-0.01_r1"}
    finished_before = {d for d in all_points if os.path.exists(os.path.join(out, "points", d, "status.json"))}
    check(finished_before != all_points, "every point finished before the interrupt: nothing to resume")
    p = run(["run", os.path.join(FIXTURES, "resume.yaml"), "--out", out])
    check(p.returncode == 0, f"resumed sweep exited {p.returncode}")
    check(f"{len(finished_before)}/3 points already finished" in p.stderr,
          f"resumed sweep does not report the {len(finished_before)} finished points")
    check(json.load(open(first))["started"] == before["started"], "the finished first point was run again")
    for pid in finished_before:
        check(f"] {pid} ..." not in p.stderr, f"finished point {pid} was redone")
    _, rows = rows_of(out)
    check({r["point"] for r in rows if r["status"] == "ok"} == all_points, "not every point finished after resume")


def offload(tmp):
    out = os.path.join(tmp, "offload")
    p = run(["run", os.path.join(FIXTURES, "offload.yaml"), "--out", out])
    check(p.returncode == 0, f"experiment run exited {p.returncode}")
    _, rows = rows_of(out)
    by = {r["point"]: r for r in rows}
    check(by["functions-0_r1"]["status"] == "ok" and by["functions-1_r1"]["status"] == "ok",
          f"points failed: {[(r['point'], r['error']) for r in rows]}")
    check(by["functions-0_r1"]["offload"] in ("", "none"), "K = 0 must run without offload")
    check(float(by["functions-1_r1"]["function_cost_usd"]) > 0, "K = 1 has no function cost in the CSV")
    check(int(by["functions-1_r1"]["invocations"]) >= 4, "K = 1: expected one invocation per minibatch")
    report = open(os.path.join(out, "report.md")).read()
    check("97.34" in report and "at K = 0" in report, "report lacks the claims table for the functions axis")
    for stem in ("fig1-line", "fig2-cost"):
        check(os.path.isfile(os.path.join(out, "figures", f"{stem}.png")), f"figure {stem} missing")


def bad_file(tmp):
    path = os.path.join(tmp, "bad.yaml")
    with open(path, "w") as f:
        f.write("name: bad\nbase: {peers: 2}\naxes: {peers: 3}\n")
    p = run(["run", path, "--out", os.path.join(tmp, "bad")])
    check(p.returncode == 2, f"a bad experiment file must exit 2 (got {p.returncode})")
    check("axis 'peers'" in p.stderr and path in p.stderr, "the error does not name the file and the bad axis")
    check(not os.path.exists(os.path.join(tmp, "bad")), "a bad file must not start a sweep")


def netns(tmp):
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        print("SKIP: network namespaces need root and iproute2", file=sys.stderr)
        sys.exit(77)
    path = os.path.join(tmp, "ns.yaml")
    with open(path, "w") as f:
        f.write("name: ns\nhosts: netns\ntimeout_s: 300\nbase: {peers: 2, transport: zmq, dataset: synthetic, "
                "synthetic-train: 1024, synthetic-test: 64, model: mlp, epochs: 1}\naxes: {bandwidth: [100mbit, 1gbit]}\n")
    out = os.path.join(tmp, "ns")
    listed = lambda: set(re.findall(r"^(p2px\S*)", subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                                   text=True).stdout, re.M))
    existing = listed()
    p = run(["run", path, "--out", out])
    check(p.returncode == 0, f"netns sweep exited {p.returncode}")
    _, rows = rows_of(out)
    check(len({r["point"] for r in rows}) == 2, "expected two points (the second reuses the namespaces)")
    check(rows and all(r["status"] == "ok" and r["hosts"] == "netns" for r in rows),
          f"netns point did not run on namespaces: {[(r['status'], r['hosts'], r['error']) for r in rows]}")
    for r in rows:  # the peers' bytes really crossed the veth links (framing adds, never removes)
        check(int(r["link_bytes_sent"]) >= int(r["bytes_sent"]) > 0,
              f"rank {r['rank']}: link counted {r['link_bytes_sent']} < peer's {r['bytes_sent']}")
    check(listed() <= existing, f"namespaces left behind: {sorted(listed() - existing)}")


def main():
    tmp = tempfile.mkdtemp(prefix=f"p2p-exp-{CASE}-")
    try:
        {"end_to_end": end_to_end, "failed_point": failed_point, "resume": resume,
         "bad_file": bad_file, "netns": netns, "offload": offload}[CASE](tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"OK ({CASE})")


if __name__ == "__main__":
    main()
