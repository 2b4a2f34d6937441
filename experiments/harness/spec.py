"""Experiment files: loading, validation and grid expansion.

An experiment file (YAML) names a base configuration, the axes to sweep and the repetitions.
Keys the harness itself interprets are in HARNESS_KEYS; every other key becomes a peer flag
(`batch_size: 64` -> `--batch_size 64`), so the file speaks the peers' own flag names.
"""

import copy
import hashlib
import itertools
import json
import re

import yaml

# Keys consumed by the harness rather than passed to `p2ptrain peer`.
HARNESS_KEYS = {"peers", "transport", "bandwidth", "cpus", "workers"}
TOP_KEYS = {"name", "question", "description", "hosts", "repetitions", "timeout_s", "base", "axes",
            "quick", "plots", "broker"}
HOSTS = {"loopback", "netns"}


class SpecError(Exception):
    """An experiment file that cannot be run; the message names the file and the bad entry."""


def load(path, quick=False):
    """Reads and validates an experiment file; `quick` applies its `quick:` overrides."""
    try:
        with open(path, encoding="utf-8") as f:
            spec = yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read the experiment file: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: the top level must be a mapping (name:, base:, axes:, ...)")
    if quick and spec.get("quick"):
        spec = _apply_quick(spec, path)
    _validate(spec, path)
    spec.setdefault("hosts", "loopback")
    spec.setdefault("repetitions", 1)
    spec.setdefault("timeout_s", 900)
    spec.setdefault("axes", {})
    spec.setdefault("plots", [])
    spec["quick_applied"] = bool(quick and spec.get("quick"))
    return spec


def _apply_quick(spec, path):
    quick = spec["quick"]
    if not isinstance(quick, dict):
        raise SpecError(f"{path}: 'quick' must be a mapping of overrides (base:, axes:, repetitions:)")
    out = copy.deepcopy(spec)
    for key, value in quick.items():
        if key in ("base", "axes") and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def _validate(spec, path):
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise SpecError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise SpecError(f"{path}: 'name' must be a word of letters, digits, '.', '_' or '-' (got {name!r})")
    if not isinstance(spec.get("base"), dict):
        raise SpecError(f"{path}: 'base' (the configuration every point starts from) must be a mapping")
    axes = spec.get("axes") or {}
    if not isinstance(axes, dict):
        raise SpecError(f"{path}: 'axes' must map a key to the list of values to sweep")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}: axis '{key}' must be a non-empty list of values (got {values!r})")
    hosts = spec.get("hosts", "loopback")
    if hosts not in HOSTS:
        raise SpecError(f"{path}: 'hosts' must be one of {sorted(HOSTS)} (got {hosts!r})")
    reps = spec.get("repetitions", 1)
    if not isinstance(reps, int) or reps < 1:
        raise SpecError(f"{path}: 'repetitions' must be a positive integer (got {reps!r})")
    timeout = spec.get("timeout_s", 900)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise SpecError(f"{path}: 'timeout_s' must be a positive number of seconds (got {timeout!r})")
    for point in expand(spec):
        peers = point["config"].get("peers", 1)
        if not isinstance(peers, int) or not 1 <= peers <= 64:
            raise SpecError(f"{path}: point {point['id']}: 'peers' must be an integer 1..64 (got {peers!r})")
        transport = point["config"].get("transport", "zmq")
        if transport not in ("zmq", "amqp"):
            raise SpecError(f"{path}: point {point['id']}: 'transport' must be zmq or amqp (got {transport!r})")


def _slug(value):
    # Point ids become directory names and part of the peers' --run-id: letters, digits, '.', '-'.
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(value)).strip("-") or "x"


def expand(spec):
    """The grid: every combination of the axes' values, times the repetitions, in file order.

    Each point gets a stable id made of its axis values and repetition, so a re-run of the same
    file finds the same directories (this is what resume relies on).
    """
    axes = spec.get("axes") or {}
    names = list(axes)
    points, seen = [], set()
    for values in itertools.product(*(axes[n] for n in names)):
        for rep in range(1, spec.get("repetitions", 1) + 1):
            config = dict(spec["base"])
            config.update(zip(names, values))
            parts = [f"{n}-{_slug(v)}" for n, v in zip(names, values)] + [f"r{rep}"]
            pid = "_".join(parts)
            if pid in seen:  # two values that slug alike: keep ids distinct
                pid += "_" + hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:6]
            seen.add(pid)
            points.append({"id": pid, "rep": rep, "config": config,
                           "axes": dict(zip(names, values))})
    return points


def effective(config):
    """The configuration with derived rules applied: `functions: 0` means no offload, and
    `attack: none` means no attacker (so no --attack-ranks either)."""
    config = dict(config)
    if config.get("attack", "none") in ("none", None):
        config.pop("attack", None)
        config.pop("attack-ranks", None)
    if config.get("functions") == 0:
        config.pop("functions")
        config["offload"] = "none"
    if config.get("offload") == "none":
        config.pop("functions", None)
        config.pop("offload", None)
    return config


def peer_flags(config):
    """Peer flags for a point: every non-harness key as --key value (true: --key; false/null: none)."""
    flags = []
    for key, value in effective(config).items():
        if key in HARNESS_KEYS or value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, list):
            flags += [f"--{key}", ",".join(str(v) for v in value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags
