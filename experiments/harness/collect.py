"""The tidy CSV: one row per point x rank x epoch, every configuration column and every metric.

A failed point keeps one row per rank that wrote metrics, or a single row with rank/epoch empty,
with status=failed and its error, so no point disappears from the table.
"""

import csv
import json
import os

from . import runner

# docs/metrics.md order; fields a peer writes that are not listed here are appended after these.
METRICS = ["event", "time", "rank", "size", "epoch", "loss", "val_loss", "test_accuracy", "lr",
           "param_hash", "compute_s", "sync_s", "send_s", "wait_s", "reduce_s", "strategy",
           "compression", "encode_s", "decode_s", "grad_bytes_raw", "grad_bytes_encoded",
           "compression_ratio", "update_s", "eval_s", "epoch_s", "samples", "rounds", "samples_per_s",
           "bytes_sent", "bytes_received", "messages_sent", "messages_received", "rejected",
           "rejected_total", "authenticated", "aggregation", "view", "members", "view_changes",
           "rejected_frames", "transport", "peak_rss_mb", "cpu_s", "early_stop", "offload",
           "functions", "invocations", "cold_starts", "warm_starts", "fn_retries", "fn_failures",
           "fn_redeliveries", "fn_latency_p50_ms", "fn_latency_p95_ms", "billed_gb_s",
           "function_cost_usd", "instance_cost_usd"]
POINT_COLS = ["experiment", "point", "rep", "status", "error", "hosts", "hosts_note", "point_wall_s",
              "setup_s", "sweep_setup_s", "link_bytes_sent", "link_bytes_received",
              "broker_link_bytes_sent", "broker_link_bytes_received"]


def read_jsonl(path):
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed peer; the others stay usable
            if isinstance(rec, dict) and rec.get("event", "epoch") == "epoch":
                rows.append(rec)
    return rows


def _flatten(rec):
    out = dict(rec)
    if isinstance(rec.get("rejected"), dict):
        out["rejected_total"] = sum(v for v in rec["rejected"].values() if isinstance(v, (int, float)))
    for key, value in rec.items():
        if isinstance(value, (dict, list)):
            out[key] = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return out


def point_rows(exp_name, point, pdir):
    """Rows of one point (empty list if it has not finished)."""
    st = runner.read_status(pdir)
    if st is None:
        return []
    config = {f"cfg_{k}": v for k, v in point["config"].items()}
    links = st.get("links", {})
    base = {"experiment": exp_name, "point": point["id"], "rep": point["rep"], "status": st["status"],
            "error": st["error"], "hosts": st["hosts"], "hosts_note": st.get("hosts_note", ""),
            "point_wall_s": st["wall_s"], "setup_s": st.get("setup_s", 0.0),
            "sweep_setup_s": st.get("sweep_setup_s", 0.0),
            # The broker's host (netns + amqp): what it took in and fanned out during the point.
            "broker_link_bytes_sent": links.get("mq", {}).get("sent", ""),
            "broker_link_bytes_received": links.get("mq", {}).get("received", ""), **config}
    rows = []
    raw = os.path.join(pdir, "raw")
    files = sorted(f for f in os.listdir(raw) if f.endswith(".jsonl")) if os.path.isdir(raw) else []
    for name in files:
        for rec in read_jsonl(os.path.join(raw, name)):
            row = dict(base)
            link = links.get(f"h{rec.get('rank')}", {})
            row["link_bytes_sent"] = link.get("sent", "")
            row["link_bytes_received"] = link.get("received", "")
            row.update(_flatten(rec))
            rows.append(row)
    if not rows:
        rows.append(dict(base))
    return rows


def collect(spec, points, out_dir):
    """Writes <out_dir>/results.csv; returns the rows (dicts) for plotting and the report."""
    rows = []
    for p in points:
        rows += point_rows(spec["name"], p, os.path.join(out_dir, "points", p["id"]))
    write_csv(rows, os.path.join(out_dir, "results.csv"))
    return rows


def write_csv(rows, path):
    cfg_cols = sorted({k for r in rows for k in r if k.startswith("cfg_")})
    seen = set(POINT_COLS) | set(cfg_cols) | set(METRICS)
    extra = sorted({k for r in rows for k in r if k not in seen})
    columns = POINT_COLS + cfg_cols + METRICS + extra
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k, "")) for k in columns})
    os.replace(tmp, path)
