"""Simulated hosts: one Linux network namespace per peer (and one for the broker), joined by a
bridge through veth pairs, each host's link capped with a `tbf` qdisc in both directions.

Everything created here is named with this process's tag (p2px<tag>...), recorded, and removed by
`Hosts.close()` (called on normal exit, on error and on Ctrl-C by the runner).
"""

import os
import shutil
import signal
import socket
import subprocess
import time


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _tc(ns, *args):
    return subprocess.run(["ip", "netns", "exec", ns, "tc", *args], check=True, capture_output=True,
                          text=True)


def available():
    """(True, "") if namespaces can be made here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "not root: network namespaces need root"
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return False, f"'{tool}' (iproute2) is not installed"
    probe = f"p2pxprobe{os.getpid() % 100000}"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except subprocess.CalledProcessError as e:
        return False, f"'ip netns add' failed: {e.stderr.strip()}"
    return True, ""


def parse_rate(text):
    """'1gbit', '100mbit', '500kbit' -> bits per second."""
    units = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}
    t = str(text).strip().lower()
    for unit, mult in units.items():
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * mult)
    raise ValueError(f"bandwidth {text!r}: expected a number with gbit, mbit or kbit (e.g. 1gbit)")


def _tbf_args(rate):
    bps = parse_rate(rate)
    # The bucket must hold at least one timer tick of traffic (rate/HZ, HZ up to 1000) and a
    # full-size frame, or tbf cannot reach its rate.
    burst = max(bps // 8 // 250, 32 * 1024)
    return ["tbf", "rate", str(bps), "burst", str(burst), "latency", "100ms"]


class Hosts:
    """The bridge and the per-host namespaces of one harness run."""

    def __init__(self):
        self.tag = f"{os.getpid() % 65536:x}"
        self.subnet = f"10.213.{os.getpid() % 200 + 20}"
        self.bridge = f"p2pxb{self.tag}"
        self.namespaces = []
        self.caps = {}  # host -> bandwidth currently applied
        self.broker_proc = None
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def host_name(self, which):
        return f"p2px{self.tag}{which}"

    def veth(self, which):
        return f"px{self.tag}{which}"  # the bridge-side end; in the namespace it is eth0

    def address(self, which):
        return f"{self.subnet}.{2 if which == 'mq' else 10 + int(which[1:])}"

    def add_host(self, which, bandwidth):
        """Creates namespace `which` ('h<rank>' or 'mq') with its address and its capped link.
        A host kept from an earlier point of the sweep only gets the new cap."""
        ns, veth = self.host_name(which), self.veth(which)
        if ns in self.namespaces:
            self._kill_inside(ns)  # nothing of the previous point may linger
            self.set_bandwidth(which, bandwidth)
            return ns
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "addr", "add", f"{self.address(which)}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.set_bandwidth(which, bandwidth)
        return ns

    def set_bandwidth(self, which, bandwidth):
        ns, veth = self.host_name(which), self.veth(which)
        if not bandwidth or self.caps.get(which) == bandwidth:
            return  # unchanged since the previous point: no tc calls
        # Host egress: on its eth0. Host ingress: egress of the bridge-side end.
        _tc(ns, "qdisc", "replace", "dev", "eth0", "root", *_tbf_args(bandwidth))
        subprocess.run(["tc", "qdisc", "replace", "dev", veth, "root", *_tbf_args(bandwidth)],
                       check=True, capture_output=True, text=True)
        self.caps[which] = bandwidth

    def counters(self, which):
        """Bytes the host sent and received on its link, from the bridge-side veth's counters."""
        base = f"/sys/class/net/{self.veth(which)}/statistics"
        with open(f"{base}/rx_bytes") as rx, open(f"{base}/tx_bytes") as tx:
            return {"sent": int(rx.read()), "received": int(tx.read())}

    def remove_host(self, which):
        ns = self.host_name(which)
        self._kill_inside(ns)
        _ip("netns", "del", ns, check=False)  # takes its veth pair with it
        if ns in self.namespaces:
            self.namespaces.remove(ns)
        self.caps.pop(which, None)

    def _kill_inside(self, ns):
        # Only processes this run started can be in its namespaces.
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    def start_broker(self, state_dir, bandwidth, timeout=120, stop=lambda: False):
        """A private RabbitMQ in namespace 'mq', listening on its bridge address; returns its URL.
        `stop()` true (Ctrl-C) abandons the wait; close() then removes the half-started broker."""
        self.add_host("mq", bandwidth)
        ns = self.host_name("mq")
        os.makedirs(f"{state_dir}/mnesia", exist_ok=True)
        os.makedirs(f"{state_dir}/log", exist_ok=True)
        with open(f"{state_dir}/rabbitmq.conf", "w") as f:
            # guest may connect from other hosts: the namespaces are the "hosts".
            f.write("loopback_users = none\nlisteners.tcp.default = 5672\n"
                    "disk_free_limit.absolute = 10MB\nlog.console = false\n")
        for name, text in (("enabled_plugins", "[]."), ("advanced.config", "[].")):
            with open(f"{state_dir}/{name}", "w") as f:
                f.write(text)
        cookie = f"{state_dir}/.erlang.cookie"
        if not os.path.exists(cookie):
            with open(cookie, "w") as f:
                f.write(os.urandom(16).hex())
            os.chmod(cookie, 0o400)
        env = dict(os.environ, HOME=state_dir, RABBITMQ_NODENAME="p2pxmq@localhost",
                   RABBITMQ_MNESIA_BASE=f"{state_dir}/mnesia", RABBITMQ_LOG_BASE=f"{state_dir}/log",
                   RABBITMQ_CONFIG_FILE=f"{state_dir}/rabbitmq.conf",
                   RABBITMQ_CONF_ENV_FILE=f"{state_dir}/rabbitmq-env.conf",
                   RABBITMQ_ENABLED_PLUGINS_FILE=f"{state_dir}/enabled_plugins",
                   RABBITMQ_ADVANCED_CONFIG_FILE=f"{state_dir}/advanced.config")
        open(f"{state_dir}/rabbitmq-env.conf", "w").close()
        server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        if not os.path.exists(server):
            server = shutil.which("rabbitmq-server") or server
        log = open(f"{state_dir}/startup.log", "w")
        self.broker_proc = subprocess.Popen(["ip", "netns", "exec", ns, server], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        address = self.address("mq")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stop():
                raise RuntimeError("interrupted while RabbitMQ was starting")
            if self.broker_proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ in namespace {ns} exited during startup; see {state_dir}/startup.log")
            try:  # the broker host is reachable from the root namespace through the bridge
                with socket.create_connection((address, 5672), timeout=1):
                    return f"amqp://guest:guest@{address}:5672/"
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"RabbitMQ in namespace {ns} not listening after {timeout} s; see {state_dir}/log")

    def close(self):
        if self.broker_proc and self.broker_proc.poll() is None:
            try:
                os.killpg(self.broker_proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in list(self.namespaces):
            self._kill_inside(ns)
            _ip("netns", "del", ns, check=False)
        self.namespaces = []
        _ip("link", "del", self.bridge, check=False)
