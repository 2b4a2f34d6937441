"""report.md: figures, the points' configuration and results, our figures beside the papers'
claims, the harness's overhead and the machine the points ran on."""

import collections
import json
import os
import platform
import subprocess
import sys

import matplotlib

from . import cost, plots

# /work/shared/REFERENCE.md (the papers' abstracts; exact tables were not published with the code).
CLAIMS = {
    "compute": ("P2P + serverless (arXiv 2309.14139)",
                "up to 97.34 % less gradient-computation time with serverless functions"),
    "cost": ("P2P + serverless (arXiv 2309.14139)",
             "serverless up to 5.4x the cost of instance-based peers"),
    "spirt": ("SPIRT (arXiv 2309.14148)", "82 % less time for model update + gradient averaging in the database"),
}


def machine(binary):
    """What the points ran on: CPU, cores, memory, kernel, load, software versions."""
    info = collections.OrderedDict()
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
        info["memory"] = f"{mem_kb / 1024 / 1024:.1f} GiB"
        with open("/proc/loadavg") as f:
            info["load average (1/5/15 min) when the report was written"] = " ".join(f.read().split()[:3])
    except (OSError, ValueError, IndexError):
        pass
    info["cpu"] = f"{cpu}, {os.cpu_count()} logical cores"
    info["kernel"] = platform.platform()
    info["python / matplotlib"] = f"{platform.python_version()} / {matplotlib.__version__}"
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        rev = subprocess.run(["git", "-C", src, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    info["p2ptrain source"] = rev or "unknown (not a git checkout)"
    info["p2ptrain binary"] = binary
    return info


def _fmt(v, digits=3):
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _point_table(points, rows, pmap):
    groups = plots.by_point(rows)
    status = collections.OrderedDict()
    for r in rows:
        status.setdefault(r["point"], r)
    lines = ["| point | status | epochs | epoch_s | compute_s | sync_s | bytes sent/epoch/peer | final test acc. | point wall (s) | error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        r = status.get(p["id"])
        if r is None:
            lines.append(f"| {p['id']} | not run | | | | | | | | |")
            continue
        rs = groups.get(p["id"], [])
        epochs = len({r2["epoch"] for r2 in rs})
        acc = None
        if rs:
            last = max(int(float(x["epoch"])) for x in rs)
            acc = plots.mean([x for x in rs if int(float(x["epoch"])) == last], "test_accuracy")
        err = str(r.get("error", "")).replace("|", "/")
        lines.append(f"| {p['id']} | {r['status']} | {epochs} | {_fmt(plots.mean(rs, 'epoch_s'))} | "
                     f"{_fmt(plots.mean(rs, 'compute_s'))} | {_fmt(plots.mean(rs, 'sync_s'))} | "
                     f"{_fmt(plots.mean(rs, 'bytes_sent'))} | {_fmt(None if acc is None else 100 * acc, 4)}{'' if acc is None else ' %'} | "
                     f"{_fmt(float(r['point_wall_s']))} | {err} |")
    return lines


def _overhead(points, rows):
    """Harness overhead per point: namespace set-up, and process start + join until training
    (point wall time minus the slowest rank's summed epoch_s)."""
    groups = plots.by_point(rows)
    first = {}
    for r in rows:
        first.setdefault(r["point"], r)
    out = []
    for p in points:
        rs = groups.get(p["id"])
        if not rs:
            continue
        per_rank = collections.defaultdict(float)
        for r in rs:
            per_rank[r["rank"]] += float(r.get("epoch_s") or 0)
        train = max(per_rank.values())
        wall = float(first[p["id"]]["point_wall_s"])
        setup = float(first[p["id"]].get("setup_s") or 0)
        out.append((p["id"], wall, train, setup, wall - train))
    return out


def _sweep_setup(rows):
    per_point = {r["point"]: float(r.get("sweep_setup_s") or 0) for r in rows}
    total = sum(per_point.values())
    return f"{total:.1f} s in this sweep" if total else "none in this sweep"


def claims_rows(rows, points):
    """Our measured counterparts to the papers' claims, where this experiment measured them."""
    pmap = {p["id"]: p for p in points}
    groups = plots.by_point(rows)
    out = []
    k0 = [pid for pid in groups if plots._series({pid: groups[pid]}, pmap, "functions", "compute_s", [])
          and (pmap[pid]["config"].get("functions") == 0 or pmap[pid]["config"].get("offload", "none") == "none")]
    kn = [pid for pid in groups if pid not in k0 and pmap[pid]["config"].get("offload", "none") != "none"
          and "functions" in pmap[pid]["config"]]
    if k0 and kn:
        base = plots.mean([r for pid in k0 for r in groups[pid]], "compute_s")
        best = min(kn, key=lambda pid: plots.mean(groups[pid], "compute_s"))
        red = 1 - plots.mean(groups[best], "compute_s") / base
        best_s = plots.mean(groups[best], "compute_s")
        change = f"{100 * red:.1f} % less" if red >= 0 else f"{-100 * red:.0f} % more (slower)"
        out.append(("compute", f"best K > 0 point ({plots.label(pmap, best)}): compute_s {best_s:.3g} s/epoch vs "
                               f"{base:.3g} s at K = 0, i.e. {change}"))
        per = cost.per_point(rows, pmap)
        c0 = sum(per[p]["instance_usd_per_epoch"] + per[p]["function_usd_per_epoch"] for p in k0) / len(k0)
        ratios = [(per[p]["instance_usd_per_epoch"] + per[p]["function_usd_per_epoch"]) / c0 for p in kn if c0]
        if ratios:
            out.append(("cost", f"{max(ratios):.2f}x the cost per epoch (max over K > 0 points) of K = 0"))
    return out


def render(spec, rows, points, figures, prefix=""):
    """The markdown body of one experiment (figure paths relative to `prefix`)."""
    md = [f"## {spec['name']}", "", f"**Question.** {spec.get('question', '')}", ""]
    if spec.get("description"):
        md += [spec["description"].strip(), ""]
    hosts = {r.get("hosts") for r in rows} - {None, ""}
    notes = {r.get("hosts_note") for r in rows} - {None, ""}
    md += [f"Hosts: {', '.join(sorted(hosts)) or spec['hosts']}" + (f" ({'; '.join(sorted(notes))})" if notes else "")
           + f". Version: {'quick' if spec.get('quick_applied') else 'full'}. Repetitions: {spec['repetitions']}. "
           f"Base configuration: `{json.dumps(spec['base'], sort_keys=True)}`; axes: "
           f"`{json.dumps(spec.get('axes', {}))}`.", ""]
    for title, stem, caption in figures:
        if stem:
            md += [f"![{title}]({prefix}figures/{stem}.png)", "", f"*{title}* ({prefix}figures/{stem}.svg). {caption}", ""]
        else:
            md += [f"*{title}*: no finished point has the metrics this figure needs.", ""]
    md += ["### Points", ""] + _point_table(points, rows, None) + [""]
    failed = sorted({(r["point"], r["error"]) for r in rows if r.get("status") == "failed"})
    if failed:
        md += ["### Failed points", ""] + [f"- `{p}`: {e}" for p, e in failed] + [""]
    links = [r for r in rows if r.get("link_bytes_sent") not in (None, "")]
    if links:
        seen, lines = set(), ["| point | rank | bandwidth | link bytes sent | link bytes received | peer-counted bytes sent (sum over epochs) |", "|---|---|---|---|---|---|"]
        sent = collections.defaultdict(float)
        for r in links:
            sent[(r["point"], r["rank"])] += float(r.get("bytes_sent") or 0)
        for r in links:
            if (r["point"], r["rank"]) in seen:
                continue
            seen.add((r["point"], r["rank"]))
            lines.append(f"| {r['point']} | {r['rank']} | {r.get('cfg_bandwidth', '')} | {r['link_bytes_sent']} | "
                         f"{r['link_bytes_received']} | {sent[(r['point'], r['rank'])]:.0f} |")
        for r in links:
            if r.get("broker_link_bytes_sent") not in (None, "") and (r["point"], "broker") not in seen:
                seen.add((r["point"], "broker"))
                lines.append(f"| {r['point']} | broker | {r.get('cfg_bandwidth', '')} | {r['broker_link_bytes_sent']} | "
                             f"{r['broker_link_bytes_received']} | – |")
        md += ["### Simulated hosts: veth counters", "",
               "Bytes each peer's host put on / took off its veth link during the point (kernel counters of the bridge-side end, whole point including the join), next to what the peer counted handing to its transport.", ""] + lines + [""]
    oh = _overhead(points, rows)
    if oh:
        md += ["### Harness overhead", "",
               "Point wall time minus the slowest rank's summed `epoch_s`: namespace set-up (`setup_s`), process start, "
               "data loading, key checks and the join. Only `setup_s` and the launch itself are the harness's own. "
               "One-off costs of a sweep on simulated hosts (bridge, the broker's namespace and RabbitMQ start, "
               f"RSA keys) are not in any point's wall time: {_sweep_setup(rows)}.", "",
               "| point | point wall (s) | training (s) | set-up (s) | wall − training (s) | set-up / wall |", "|---|---|---|---|---|---|"]
        md += [f"| {p} | {w:.2f} | {t:.2f} | {s:.2f} | {w - t:.2f} | {100 * s / w:.1f} % |" for p, w, t, s, _ in oh] + [""]
    claims = claims_rows(rows, points)
    if claims:
        md += ["### Beside the papers' claims", "", "| claim | source | ours (this machine, these points) |", "|---|---|---|"]
        md += [f"| {CLAIMS[k][1]} | {CLAIMS[k][0]} | {v} |" for k, v in claims] + [""]
    return md


def write(spec, rows, points, figures, out_dir, binary):
    md = [f"# Experiment {spec['name']}", "", "Raw data: `results.csv` (one row per point × rank × epoch) "
          "and `points/<point>/raw/rank-<r>.jsonl` (the peers' own metrics, docs/metrics.md).", ""]
    md += render(spec, rows, points, figures)
    md += ["## Machine", ""] + [f"- {k}: {v}" for k, v in machine(binary).items()] + [""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md))
