"""An α–β model of an epoch, fitted to measured points and extrapolated to more peers.

Per exchange round a peer spends  t_round = α·(W − 1) + β·B(W)  communicating, where B(W) is the
bytes it sends per round (measured; for the extrapolation B(W) = (W − 1)·G for allgather and
2(W − 1)/W·G for reduce-scatter, G the encoded gradient's bytes), and  c  seconds of compute per
training sample. An epoch of N samples on W peers with batch b and one exchange per minibatch:

    epoch(W) = c·N/W + ceil(N / (W·b))·t_round(W)

α, β are fitted per transport by least squares on the measured rounds of multi-peer points, c on
every point. The model knows nothing of CPU contention: on one machine W peers share the cores,
which is exactly where it stops agreeing with the measurements (the report shows the residuals).
"""

import collections
import math

import numpy as np


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _points(rows, points):
    """Per finished point: W, transport, strategy, batch, and per-epoch means of the metrics."""
    by = collections.defaultdict(list)
    for r in rows:
        if r.get("status") == "ok" and _num(r.get("epoch")) is not None:
            by[r["point"]].append(r)
    out = []
    for pid, rs in by.items():
        mean = lambda k: sum(_num(r.get(k)) or 0.0 for r in rs) / len(rs)  # noqa: E731
        rounds = mean("rounds")
        if not rounds:
            continue
        cfg = points[pid]["config"]
        out.append({"point": pid, "W": int(cfg.get("peers", 1)), "transport": cfg.get("transport", "zmq"),
                    "strategy": rs[0].get("strategy") or "", "batch": int(cfg.get("batch_size", 64)),
                    "rounds": rounds, "samples": mean("samples"), "compute_s": mean("compute_s"),
                    "sync_s": mean("sync_s"), "epoch_s": mean("epoch_s"),
                    "bytes_per_round": mean("bytes_sent") / rounds,
                    "grad_bytes": mean("grad_bytes_encoded") / rounds})
    return out


def fit(rows, points):
    """{'c': s/sample, 'transports': {t: (alpha, beta, n)}, 'points': [...]} or None."""
    pts = _points(rows, points)
    if not pts:
        return None
    c = sum(p["compute_s"] for p in pts) / max(1e-12, sum(p["samples"] for p in pts))
    transports = {}
    for t in sorted({p["transport"] for p in pts}):
        multi = [p for p in pts if p["transport"] == t and p["W"] > 1]
        if len(multi) < 2:
            continue
        A = np.array([[p["W"] - 1, p["bytes_per_round"]] for p in multi])
        y = np.array([p["sync_s"] / p["rounds"] for p in multi])
        (alpha, beta), *_ = np.linalg.lstsq(A, y, rcond=None)
        transports[t] = (max(alpha, 0.0), max(beta, 0.0), len(multi))
    return {"c": c, "transports": transports, "points": pts}


def predict(model, transport, W, batch, n_samples, grad_bytes, strategy):
    alpha, beta, _ = model["transports"][transport]
    if W == 1:
        sent = 0.0
    elif strategy == "reduce-scatter-average":
        sent = 2 * (W - 1) / W * grad_bytes
    else:
        sent = (W - 1) * grad_bytes
    rounds = math.ceil(n_samples / (W * batch))
    comm = rounds * (alpha * (W - 1) + beta * sent) if W > 1 else 0.0
    return model["c"] * n_samples / W + comm


def residuals(model):
    """(point, measured epoch_s, predicted epoch_s, relative error) for every measured point."""
    out = []
    for p in model["points"]:
        if p["transport"] not in model["transports"]:
            continue
        n = p["samples"] * p["W"]
        strategy = "reduce-scatter-average" if p["strategy"].startswith("reduce") else "allgather"
        pred = predict(model, p["transport"], p["W"], p["batch"], n, p["grad_bytes"], strategy)
        # The model covers compute + exchange; the epoch also has update and evaluation, added as measured.
        pred += p["epoch_s"] - p["compute_s"] - p["sync_s"]
        out.append((p["point"], p["epoch_s"], pred, (pred - p["epoch_s"]) / p["epoch_s"] if p["epoch_s"] else 0.0))
    return out
