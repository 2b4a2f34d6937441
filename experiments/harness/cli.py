"""Command line of scripts/experiment (see docs/experiments.md)."""

import argparse
import datetime
import os
import sys

from . import collect, plots, report, runner, spec as specmod

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _binary(arg):
    path = arg or os.environ.get("P2P_BINARY") or os.path.join(SRC, "build", "peer", "p2ptrain")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SystemExit(f"experiment: no p2ptrain binary at {path}; build it (cmake --build build "
                         f"--target p2ptrain p2ptrain-function) or pass --binary PATH")
    return os.path.abspath(path)


def _finish(spec, out_dir, binary):
    """CSV, figures and report.md from whatever points have finished."""
    points = specmod.expand(spec)
    rows = collect.collect(spec, points, out_dir)
    figures = plots.draw_all(spec, rows, points, out_dir)
    report.write(spec, rows, points, figures, out_dir, binary)
    return rows, points, figures


def cmd_run(args):
    binary = _binary(args.binary)
    spec = specmod.load(args.file, quick=args.quick)
    out_dir = args.out or os.path.join(args.results, datetime.date.today().isoformat(), spec["name"])
    os.makedirs(out_dir, exist_ok=True)
    completed = runner.Runner(spec, out_dir, binary, retry_failed=args.retry_failed).run()
    rows, points, _ = _finish(spec, out_dir, binary)
    failed = sorted({r["point"] for r in rows if r.get("status") == "failed"})
    ok = sorted({r["point"] for r in rows if r.get("status") == "ok"})
    print(f"experiment {spec['name']}: {len(ok)} ok, {len(failed)} failed, {len(points) - len(ok) - len(failed)} "
          f"not run, of {len(points)} points; {out_dir}/results.csv, {out_dir}/report.md", file=sys.stderr)
    if failed:
        print(f"experiment {spec['name']}: failed points (errors in the report and the CSV): {', '.join(failed)}",
              file=sys.stderr)
    return 0 if completed else 130


def cmd_report(args):
    binary = _binary(args.binary)
    spec = specmod.load(args.file, quick=args.quick)
    _finish(spec, args.dir, binary)
    print(f"experiment: wrote {args.dir}/results.csv and {args.dir}/report.md", file=sys.stderr)
    return 0


def cmd_study(args):
    """One report.md for several experiment directories under ROOT (scripts/reproduce-study.sh)."""
    binary = _binary(args.binary)
    md = ["# p2ptrain study reproduction", "",
          f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} by "
          f"`scripts/reproduce-study.sh{' --full' if not args.quick else ''}` ({'quick' if args.quick else 'full'} version). "
          "Each experiment's own directory holds its `results.csv`, raw JSON lines, figures and report.", ""]
    claims = []
    for path in args.files:
        spec = specmod.load(path, quick=args.quick)
        out_dir = os.path.join(args.root, spec["name"])
        if not os.path.isdir(out_dir):
            md += [f"## {spec['name']}", "", f"Not run: {out_dir} does not exist.", ""]
            continue
        rows, points, figures = _finish(spec, out_dir, binary)
        md += report.render(spec, rows, points, figures, prefix=f"{spec['name']}/")
        claims += [(spec["name"], k, v) for k, v in report.claims_rows(rows, points)]
    md += ["## The papers' claims beside our figures", "", "| claim | source | ours | experiment |", "|---|---|---|---|"]
    for name, k, v in claims:
        md.append(f"| {report.CLAIMS[k][1]} | {report.CLAIMS[k][0]} | {v} | {name} |")
    if not any(k == "spirt" for _, k, _ in claims):
        md.append(f"| {report.CLAIMS['spirt'][1]} | {report.CLAIMS['spirt'][0]} | not measured: peers do not "
                  "use the Redis store yet (docs/spirt.md) | – |")
    md += ["", "Our runs are on one small shared machine with MLP/Fashion-MNIST, not the papers' EC2 fleets "
           "and CNNs: compare directions and ratios, not absolute values.", "",
           "## Machine", ""] + [f"- {k}: {v}" for k, v in report.machine(binary).items()] + [""]
    with open(os.path.join(args.root, "report.md"), "w") as f:
        f.write("\n".join(md))
    print(f"experiment: wrote {args.root}/report.md", file=sys.stderr)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="experiment", description="Run p2ptrain experiment sweeps (docs/experiments.md).")
    ap.add_argument("--binary", help="p2ptrain binary (default $P2P_BINARY or build/peer/p2ptrain)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (or resume) an experiment file's points, then write CSV, figures, report")
    r.add_argument("file")
    r.add_argument("--out", help="output directory (default RESULTS/<date>/<name>); the same directory resumes")
    r.add_argument("--results", default="results", help="results root (default ./results)")
    r.add_argument("--quick", action="store_true", help="apply the file's quick: overrides")
    r.add_argument("--retry-failed", action="store_true", help="run failed points again (default: keep their failure)")
    r.set_defaults(fn=cmd_run)
    p = sub.add_parser("report", help="rewrite CSV, figures and report of an output directory")
    p.add_argument("file")
    p.add_argument("dir")
    p.add_argument("--quick", action="store_true")
    p.set_defaults(fn=cmd_report)
    s = sub.add_parser("study", help="one report.md for several experiments' output directories under ROOT")
    s.add_argument("root")
    s.add_argument("files", nargs="+")
    s.add_argument("--quick", action="store_true")
    s.set_defaults(fn=cmd_study)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except specmod.SpecError as e:
        print(f"experiment: {e}", file=sys.stderr)
        return 2
