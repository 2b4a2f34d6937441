"""Runs an experiment's points, one after the other, each in its own directory.

A point's directory holds the raw JSON lines (raw/rank-<r>.jsonl), the peers' output and, once
the point has finished, status.json. status.json is written last and atomically: its presence is
what "finished" means, so an interrupted sweep re-run later skips exactly the finished points.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from . import netns, spec as specmod

INTERRUPTED = False


def _on_signal(signum, frame):
    global INTERRUPTED
    INTERRUPTED = True


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_status(pdir):
    try:
        with open(os.path.join(pdir, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _stop(procs, grace=5.0):
    """SIGINT to every still-running process group (peers exit cleanly), SIGKILL after grace."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def _last_error(log_path):
    """What a failed process said: its last 'error' line and the indented lines quoted under it
    (launch quotes the failed peer's last output there), else its last line."""
    try:
        with open(log_path, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
    except OSError:
        return "no output"
    idx = [i for i, l in enumerate(lines) if "error" in l.lower() or "fail" in l.lower()]
    if not idx:
        return (lines or ["no output"])[-1].strip()[:400]
    i = idx[-1]
    quoted = [l.strip() for l in lines[i + 1:i + 4] if l.startswith(" ")]
    return " / ".join([lines[i].strip()] + quoted)[:600]


def _supervise(procs, logs, deadline, watch=()):
    """Waits for every process; returns None on success, else the error that ended the point.
    `watch`: (process, (name, log)) that must stay up meanwhile (function workers)."""
    while True:
        if INTERRUPTED:
            _stop(procs)
            return "interrupted"
        for p, (name, log) in watch:
            if p.poll() is not None and any(q.poll() is None for q in procs):
                _stop(procs)
                return f"{name} exited with status {p.returncode} during the run: {_last_error(log)}"
        codes = [p.poll() for p in procs]
        for i, code in enumerate(codes):
            if code not in (None, 0):
                _stop(procs)
                return f"{logs[i][0]} exited with status {code}: {_last_error(logs[i][1])}"
        if all(c == 0 for c in codes):
            return None
        if time.monotonic() > deadline:
            _stop(procs)
            return f"timed out after the point's timeout_s; last output: {_last_error(logs[0][1])}"
        try:  # block on the first still-running process, briefly, to notice the others too
            next(p for p in procs if p.poll() is None).wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass


class Runner:
    def __init__(self, spec, out_dir, binary, retry_failed=False, log=sys.stderr):
        self.spec, self.out, self.binary, self.log = spec, out_dir, binary, log
        self.retry_failed = retry_failed
        self.points = specmod.expand(spec)
        self.hosts = None
        self.hosts_note = ""
        self.broker_url = None
        self.keys_dir = os.path.join(out_dir, "_keys")

    # ---- simulated hosts -------------------------------------------------------------------
    def _mode(self):
        if self.spec["hosts"] != "netns":
            return "loopback"
        ok, why = netns.available()
        if not ok:
            self.hosts_note = f"netns requested, fell back to loopback: {why}"
            return "loopback"
        return "netns"

    def _keys(self, size):
        """One RSA identity per rank (made once per output dir) and a trust dir with all of them."""
        trust = os.path.join(self.keys_dir, "trust")
        os.makedirs(trust, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        for r in range(size):
            rdir = os.path.join(self.keys_dir, f"rank-{r}")
            if not os.path.exists(os.path.join(rdir, "private.pem")):
                subprocess.run([self.binary, "keygen", "--out", rdir], check=True, capture_output=True)
                shutil.copy(os.path.join(rdir, "public.pem"), os.path.join(trust, f"rank{r}.pem"))
        return trust

    # ---- one point -----------------------------------------------------------------------
    def _broker_url(self):
        return self.spec.get("broker") or os.environ.get("P2P_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

    def _start_workers(self, cfg, pdir, run_id):
        """`workers: N` with `offload: amqp`: N `p2ptrain function --serve` on a queue of this point."""
        n = int(cfg.get("workers") or 0)
        if n <= 0 or specmod.effective(cfg).get("offload") != "amqp":
            return [], []
        queue = f"p2pexp.{run_id}"
        cfg.setdefault("fn-queue", queue)
        cfg.setdefault("fn-broker", self._broker_url())
        procs, logs = [], []
        for i in range(n):
            log = os.path.join(pdir, f"worker-{i}.log")
            with open(log, "w") as out:
                procs.append(subprocess.Popen(
                    [self.binary, "function", "--serve", "--broker", cfg["fn-broker"], "--queue", cfg["fn-queue"]],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
            logs.append((f"function worker {i}", log))
        return procs, logs

    def _run_loopback(self, point, pdir, run_id, deadline):
        cfg = dict(point["config"])
        workers, wlogs = self._start_workers(cfg, pdir, run_id)
        try:
            return self._launch(cfg, pdir, run_id, deadline, workers, wlogs)
        finally:
            _stop(workers, grace=5)

    def _launch(self, cfg, pdir, run_id, deadline, workers, wlogs):
        cmd = [self.binary, "launch", "--size", str(cfg.get("peers", 1)), "--transport",
               cfg.get("transport", "zmq"), "--run-id", run_id, "--metrics-dir",
               os.path.join(pdir, "raw"), "--progress", "off"]
        if cfg.get("transport") == "amqp":
            cmd += ["--broker", self._broker_url()]
        cmd += ["--"] + specmod.peer_flags(cfg)
        log = os.path.join(pdir, "launch.log")
        with open(os.path.join(pdir, "command.txt"), "w") as f:
            f.write(" ".join(cmd) + "\n")
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        # Workers serve until stopped: the point is over when launch is, unless a worker died first.
        error = _supervise([proc], [("p2ptrain launch", log)], deadline, watch=list(zip(workers, wlogs)))
        return error, {}

    def _run_netns(self, point, pdir, run_id, deadline):
        cfg = point["config"]
        size, transport = cfg.get("peers", 1), cfg.get("transport", "zmq")
        bandwidth = cfg.get("bandwidth")
        # One-off costs of the sweep (not of this point): the bridge, the broker host, the keys.
        once = time.monotonic()
        if self.hosts is None:
            self.hosts = netns.Hosts()
        if transport == "amqp" and self.broker_url is None:
            self.broker_url = self.hosts.start_broker(os.path.join(self.out, "_broker"), bandwidth,
                                                      stop=lambda: INTERRUPTED)
        trust = self._keys(size)
        once_s = time.monotonic() - once
        t0 = time.monotonic()
        if transport == "amqp":
            self.hosts.set_bandwidth("mq", bandwidth)
        names = [f"h{r}" for r in range(size)]
        for n in names:
            self.hosts.add_host(n, bandwidth)
        setup_s = time.monotonic() - t0
        before = {n: self.hosts.counters(n) for n in names + (["mq"] if transport == "amqp" else [])}
        threads = str(max(1, (os.cpu_count() or 1) // size))
        cpus = cfg.get("cpus")  # e.g. "0,1": rank r pinned to cpus[r % len]
        cpu_list = str(cpus).split(",") if cpus else []
        procs, logs, cmds = [], [], []
        try:
            for r in range(size):
                cmd = ["ip", "netns", "exec", self.hosts.host_name(f"h{r}")]
                if cpu_list:
                    cmd += ["taskset", "-c", cpu_list[r % len(cpu_list)]]
                cmd += [self.binary, "peer", "--size", str(size), "--rank", str(r), "--transport",
                        transport, "--run-id", run_id, "--progress", "off", "--metrics",
                        os.path.join(pdir, "raw", f"rank-{r}.jsonl"),
                        "--key", os.path.join(self.keys_dir, f"rank-{r}", "private.pem"),
                        "--trust", trust, "--threads", threads]
                if transport == "amqp":
                    cmd += ["--broker", self.broker_url]
                else:
                    cmd += ["--peers", ",".join(f"{self.hosts.address(f'h{i}')}:5555" for i in range(size))]
                cmd += specmod.peer_flags(cfg)
                cmds.append(" ".join(cmd))
                log = os.path.join(pdir, f"rank-{r}.log")
                with open(log, "w") as out:
                    procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True))
                logs.append((f"rank {r}", log))
            with open(os.path.join(pdir, "command.txt"), "w") as f:
                f.write("\n".join(cmds) + "\n")
            error = _supervise(procs, logs, deadline)
            after = {n: self.hosts.counters(n) for n in before}
        finally:
            # The namespaces stay for the next point (only the cap changes); close() removes them.
            _stop(procs, grace=2)
        links = {n: {"sent": after[n]["sent"] - before[n]["sent"],
                     "received": after[n]["received"] - before[n]["received"]} for n in before}
        return error, {"setup_s": round(setup_s, 3), "sweep_setup_s": round(once_s, 3), "links": links, "bandwidth": bandwidth,
                       "addresses": {n: self.hosts.address(n) for n in before}}

    def run_point(self, point, mode):
        pdir = os.path.join(self.out, "points", point["id"])
        shutil.rmtree(pdir, ignore_errors=True)  # an unfinished attempt leaves nothing behind
        os.makedirs(os.path.join(pdir, "raw"))
        # p2ptrain accepts letters, digits, '-', '_' and '.' in a run id.
        run_id = re.sub(r"[^A-Za-z0-9._-]", "-", f"{self.spec['name']}-{point['id']}-{os.getpid()}-{int(time.time())}")[:200]
        deadline = time.monotonic() + self.spec["timeout_s"]
        started = time.time()
        t0 = time.monotonic()
        try:
            if mode == "netns":
                error, extra = self._run_netns(point, pdir, run_id, deadline)
            else:
                error, extra = self._run_loopback(point, pdir, run_id, deadline)
        except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as e:
            error, extra = f"harness could not run the point: {e}{_stderr_of(e)}", {}
        wall = time.monotonic() - t0 - extra.get("sweep_setup_s", 0.0)
        if error == "interrupted" or INTERRUPTED:  # an interrupted point is not finished
            return None
        status = {"status": "failed" if error else "ok", "error": error or "", "wall_s": round(wall, 3),
                  "started": started, "hosts": mode, "hosts_note": self.hosts_note,
                  "config": point["config"], "axes": point["axes"], "rep": point["rep"],
                  "run_id": run_id, **extra}
        _write_json(os.path.join(pdir, "status.json"), status)
        return status

    # ---- the sweep -----------------------------------------------------------------------
    def run(self):
        global INTERRUPTED
        INTERRUPTED = False
        old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        os.makedirs(os.path.join(self.out, "points"), exist_ok=True)
        _write_json(os.path.join(self.out, "experiment.json"), self.spec)
        mode = self._mode()
        if self.hosts_note:
            print(f"experiment: {self.hosts_note}", file=self.log)
        total, todo = len(self.points), []
        for p in self.points:
            st = read_status(os.path.join(self.out, "points", p["id"]))
            if st and (st["status"] == "ok" or not self.retry_failed):
                continue
            todo.append(p)
        done = total - len(todo)
        if done:
            print(f"experiment {self.spec['name']}: {done}/{total} points already finished in {self.out}; "
                  f"running the other {len(todo)}", file=self.log)
        durations = []
        try:
            for p in todo:
                if INTERRUPTED:
                    break
                print(f"[{done + 1}/{total}] {p['id']} ...", file=self.log, flush=True)
                st = self.run_point(p, mode)
                if st is None:
                    break
                done += 1
                durations.append(st["wall_s"])
                left = len(todo) - len(durations)
                eta = sum(durations) / len(durations) * left
                msg = "ok" if st["status"] == "ok" else f"FAILED: {st['error']}"
                print(f"[{done}/{total}] {p['id']}: {msg} ({st['wall_s']:.1f} s; ETA {_fmt(eta)})",
                      file=self.log, flush=True)
        finally:
            if self.hosts:
                self.hosts.close()
                self.hosts = None
            for s, h in old.items():
                signal.signal(s, h)
        if INTERRUPTED:
            print(f"experiment {self.spec['name']}: interrupted; {done}/{total} points finished. "
                  f"Run the same command again to resume.", file=self.log)
        return not INTERRUPTED


def _stderr_of(e):
    detail = getattr(e, "stderr", None)
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    return f" ({detail.strip()})" if detail and detail.strip() else ""


def _fmt(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"
