"""Cost per point with the price model of docs/cost-model.md.

Peers: their own `instance_cost_usd` when the peer wrote it (runs with --offload), else epoch wall
seconds / 3600 x the hourly price of the point's `instance-type` (default t2.medium). The broker
of an AMQP run is one more instance of the same type for the epoch's wall time (the study ran
Amazon MQ on its own host). Functions: the peers' `function_cost_usd` (Lambda GB-s + requests).
"""

import collections

# docs/cost-model.md: EC2 on-demand, Linux, us-east-1.
INSTANCE_PER_HOUR = {"t2.medium": 0.0464, "t2.large": 0.0928}


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def per_point(rows, points):
    """{point: {instance_usd_per_epoch, function_usd_per_epoch, total_usd, final_accuracy,
    usd_per_accuracy_point}} for every finished point with metrics."""
    by = collections.OrderedDict()
    for r in rows:
        if r.get("status") == "ok" and _num(r.get("epoch")) is not None:
            by.setdefault(r["point"], collections.defaultdict(list))[int(_num(r["epoch"]))].append(r)
    out = collections.OrderedDict()
    for pid, epochs in by.items():
        cfg = points[pid]["config"]
        price = INSTANCE_PER_HOUR.get(cfg.get("instance-type", "t2.medium"), INSTANCE_PER_HOUR["t2.medium"])
        inst_total = fn_total = 0.0
        for rs in epochs.values():
            wall = max(_num(r.get("epoch_s")) or 0.0 for r in rs)
            for r in rs:
                own = _num(r.get("instance_cost_usd"))
                inst_total += own if own is not None else (_num(r.get("epoch_s")) or 0.0) / 3600 * price
                fn_total += _num(r.get("function_cost_usd")) or 0.0
            if cfg.get("transport") == "amqp":
                inst_total += wall / 3600 * price
        last = epochs[max(epochs)]
        accs = [_num(r.get("test_accuracy")) for r in last if _num(r.get("test_accuracy")) is not None]
        acc = sum(accs) / len(accs) if accs else None
        n = len(epochs)
        total = inst_total + fn_total
        out[pid] = {"instance_usd_per_epoch": inst_total / n, "function_usd_per_epoch": fn_total / n,
                    "total_usd": total, "final_accuracy": acc,
                    "usd_per_accuracy_point": total / (100 * acc) if acc else None}
    return out
