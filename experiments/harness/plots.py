"""Figures from the tidy rows: one figure per question, PNG and SVG, axes labelled with units.

Each experiment file lists the figures it wants under `plots:` as {kind: ..., title: ..., x: ...};
KINDS maps a kind to the function drawing it. Every function returns the figure's file stem (or
None when the rows hold nothing to draw, which the report then says).
"""

import collections
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import cost, model, netns  # noqa: E402

PARTS = [("compute_s", "compute"), ("send_s", "send"), ("wait_s", "wait"), ("reduce_s", "reduce"),
         ("update_s", "update")]


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def epoch_rows(rows):
    return [r for r in rows if r.get("status") == "ok" and _num(r.get("epoch")) is not None]


def by_point(rows):
    out = collections.OrderedDict()
    for r in epoch_rows(rows):
        out.setdefault(r["point"], []).append(r)
    return out


def mean(rows, key):
    vals = [_num(r.get(key)) for r in rows]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def label(points, pid, skip=()):
    """A point's short label: its axis values other than `skip`."""
    axes = points[pid]["axes"]
    parts = [f"{k}={v}" for k, v in axes.items() if k not in skip]
    return ", ".join(parts) or pid


def _save(fig, out_dir, stem):
    os.makedirs(out_dir, exist_ok=True)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out_dir, f"{stem}.{ext}"), dpi=110)
    plt.close(fig)
    return stem


def _sorted_points(groups, points, x):
    return sorted(groups, key=lambda pid: (str(points[pid]["axes"].get(x, points[pid]["config"].get(x))),
                                           label(points, pid)))


def breakdown(rows, points, out_dir, stem, title, x="peers", **_):
    groups = by_point(rows)
    if not groups:
        return None
    order = _sorted_points(groups, points, x)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(order) + 2), 4.5))
    bottom = [0.0] * len(order)
    for key, name in PARTS:
        vals = [mean(groups[pid], key) or 0.0 for pid in order]
        ax.bar(range(len(order)), vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([label(points, pid) for pid in order], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("time per epoch, mean over peers and epochs (s)")
    ax.set_xlabel(f"point (sorted by {x})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, stem)


def _xval(cfg, x):
    """A point's x value; `bandwidth_mbit` is the bandwidth cap in Mbit/s."""
    if x == "bandwidth_mbit":
        return netns.parse_rate(cfg["bandwidth"]) / 1e6 if cfg.get("bandwidth") else None
    return _num(cfg.get(x))


def _series(groups, points, x, y, series_by):
    data = collections.defaultdict(list)
    for pid, rs in groups.items():
        cfg = points[pid]["config"]
        xv = _xval(cfg, x)
        if x == "functions" and cfg.get("offload", "none") == "none":
            xv = 0.0
        yv = mean(rs, y)
        if xv is None or yv is None:
            continue
        key = ", ".join(f"{s}={cfg.get(s)}" for s in series_by) or y
        data[key].append((xv, yv))
    return data


def line(rows, points, out_dir, stem, title, x, y, series=(), xlabel=None, ylabel=None, **_):
    data = _series(by_point(rows), points, x, y, list(series))
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for key, pts in sorted(data.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir, stem)


def bars(rows, points, out_dir, stem, title, y, x, ylabel=None, scale=1.0, final=False, **_):
    """Mean of metric y per value of config key x (final=True: the last epoch only)."""
    groups = by_point(rows)
    vals = collections.defaultdict(list)
    for pid, rs in groups.items():
        if final:
            last = max(_num(r["epoch"]) for r in rs)
            rs = [r for r in rs if _num(r["epoch"]) == last]
        v = mean(rs, y)
        if v is not None:
            vals[str(points[pid]["config"].get(x))].append(v * scale)
    if not vals:
        return None
    keys = sorted(vals)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(keys) + 2), 4.5))
    ax.bar(range(len(keys)), [sum(vals[k]) / len(vals[k]) for k in keys])
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=9)
    return _save(fig, out_dir, stem)


def grouped(rows, points, out_dir, stem, title, y, x, group, ylabel=None, **_):
    """Final-epoch metric y: groups of bars per value of `x`, one bar per value of `group`."""
    groups = by_point(rows)
    table = collections.defaultdict(list)
    for pid, rs in groups.items():
        last = max(_num(r["epoch"]) for r in rs)
        v = mean([r for r in rs if _num(r["epoch"]) == last], y)
        cfg = points[pid]["config"]
        if v is not None:
            table[(str(cfg.get(x)), str(cfg.get(group)))].append(v)
    if not table:
        return None
    xs = sorted({k[0] for k in table})
    gs = sorted({k[1] for k in table})
    width = 0.8 / len(gs)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(xs) + 2), 4.5))
    for i, g in enumerate(gs):
        ys = [sum(table[(xv, g)]) / len(table[(xv, g)]) if table.get((xv, g)) else None for xv in xs]
        pos = [j + i * width for j in range(len(xs))]
        bars_ = ax.bar(pos, [0 if y is None else y for y in ys], width, label=f"{group}={g}")
        for p, y, b in zip(pos, ys, bars_):
            if y is None:  # failed or not run: say so instead of drawing a zero
                ax.text(p, 0, "no result", rotation=90, ha="center", va="bottom", fontsize=6,
                        color=b.get_facecolor())
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(xs))])
    ax.set_xticklabels(xs, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, stem)


def accuracy(rows, points, out_dir, stem, title, **_):
    groups = by_point(rows)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.5))
    drawn = False
    for pid, rs in groups.items():
        r0 = sorted((r for r in rs if str(r.get("rank")) == "0"), key=lambda r: _num(r["epoch"]))
        pts = [(_num(r["epoch"]), _num(r.get("test_accuracy")), _num(r.get("epoch_s"))) for r in r0]
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        drawn = True
        wall, cum = [], 0.0
        for p in pts:
            cum += p[2] or 0.0
            wall.append(cum)
        a1.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=label(points, pid))
        a2.plot(wall, [100 * p[1] for p in pts], marker="o", label=label(points, pid))
    if not drawn:
        plt.close(fig)
        return None
    a1.set_xlabel("epoch")
    a2.set_xlabel("training wall time, cumulative epoch_s of rank 0 (s)")
    for a in (a1, a2):
        a.set_ylabel("test accuracy (%)")
        a.grid(alpha=0.3)
    a1.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, out_dir, stem)


def cost_fig(rows, points, out_dir, stem, title, **_):
    per = cost.per_point(rows, points)
    if not per:
        return None
    pids = list(per)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    inst = [per[p]["instance_usd_per_epoch"] * 1e6 for p in pids]
    fn = [per[p]["function_usd_per_epoch"] * 1e6 for p in pids]
    a1.bar(range(len(pids)), inst, label="EC2 instances (peers + broker)")
    a1.bar(range(len(pids)), fn, bottom=inst, label="Lambda (GB-s + requests)")
    a1.set_ylabel("cost per epoch (µUSD)")
    a1.legend(fontsize=7)
    per_pt = [per[p]["usd_per_accuracy_point"] * 1e6 if per[p]["usd_per_accuracy_point"] else 0 for p in pids]
    a2.bar(range(len(pids)), per_pt)
    a2.set_ylabel("cost per test-accuracy point, whole run (µUSD / %)")
    for a in (a1, a2):
        a.set_xticks(range(len(pids)))
        a.set_xticklabels([label(points, p) for p in pids], rotation=60, ha="right", fontsize=7)
        a.set_xlabel("point")
    fig.suptitle(title, fontsize=9)
    return _save(fig, out_dir, stem)


def scaling_model(rows, points, out_dir, stem, title, batch=None, **_):
    """Measured epoch time vs peers beside the α–β model's prediction for 1..64 peers."""
    m = model.fit(rows, points)
    if not m or not m["transports"]:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ws = [1, 2, 4, 8, 16, 32, 64]
    md = ["", "| transport | α (s per peer per round) | β (s per byte) | 1/β (MB/s) | points fitted |", "|---|---|---|---|---|"]
    for t, (alpha, beta, n) in sorted(m["transports"].items()):
        md.append(f"| {t} | {alpha:.3g} | {beta:.3g} | {(1 / beta / 1e6) if beta else float('inf'):.3g} | {n} |")
        pts = [p for p in m["points"] if p["transport"] == t]
        bsel = batch or max(collections.Counter(p["batch"] for p in pts).items(), key=lambda kv: kv[1])[0]
        ref = [p for p in pts if p["batch"] == bsel] or pts
        n_samples = max(p["samples"] * p["W"] for p in ref)
        g = max(p["grad_bytes"] for p in ref)
        for strat, style in (("allgather", "--"), ("reduce-scatter-average", ":")):
            ax.plot(ws, [model.predict(m, t, w, bsel, n_samples, g, strat) for w in ws], style,
                    label=f"model {t}, {strat}, batch {bsel}")
        meas = sorted((p["W"], p["epoch_s"]) for p in ref)
        ax.plot([x for x, _ in meas], [y for _, y in meas], "o", label=f"measured {t}, batch {bsel}")
    md.append(f"\nCompute per sample c = {m['c']:.3g} s. Measured vs predicted epoch time:\n")
    md += ["| point | measured epoch_s | model (s) | error |", "|---|---|---|---|"]
    md += [f"| {p} | {a:.3g} | {b:.3g} | {100 * e:+.0f} %{' (disagrees)' if abs(e) > 0.25 else ''} |"
           for p, a, b, e in model.residuals(m)]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("peers W")
    ax.set_ylabel("epoch time (s), compute + gradient exchange")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out_dir, stem), "\n".join(md)


KINDS = {"scaling_model": scaling_model, "breakdown": breakdown, "line": line, "bars": bars, "grouped": grouped,
         "accuracy": accuracy, "cost": cost_fig}


def draw_all(spec, rows, points, out_dir):
    """Draws the experiment's figures; returns [(title, stem or None, caption)]."""
    pmap = {p["id"]: p for p in points}
    out = []
    for i, plot in enumerate(spec.get("plots") or [], 1):
        plot = dict(plot)
        kind = plot.pop("kind")
        title = plot.pop("title", kind)
        caption = plot.pop("caption", "")
        stem = f"fig{i}-{kind}"
        fn = KINDS.get(kind)
        if fn is None:
            raise ValueError(f"plot kind {kind!r} unknown; known: {sorted(KINDS)}")
        result = fn(rows, pmap, os.path.join(out_dir, "figures"), stem, title, **plot)
        if isinstance(result, tuple):  # (stem, markdown to print under the figure)
            result, more = result
            caption = f"{caption}\n{more}"
        out.append((title, result, caption))
    return out
