"""Faults injected into a Redis sentinel cluster (the example: 3 members, persistence `both`,
min-replicas-to-write 1, min-replicas-max-lag 10), as JSON.

Each scenario runs under a client writing one key every 10 ms through a Sentinel-aware connection:

- server_killed: `kill -9` of the primary's redis-server (systemd starts it again);
- member_killed: the primary's whole member is killed (`podman kill`), then started again;
- primary_cut_off: the primary's member is disconnected from the network, then connected again.
  From inside the member a probe keeps writing to the cut-off primary: it must refuse writes within
  min-replicas-max-lag (plus Redis's once-a-second replica check), which bounds what Redis loses.

Redis replicates asynchronously: an acknowledged write the replicas had not received is lost when
the primary dies; the figures show how many. After each scenario `cluster_apply` runs and the
cluster must again have one primary that two replicas follow, and every Sentinel must agree on it.
The run exits non-zero when that fails or the cut-off primary kept taking writes past the bound.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from chaos_postgresql_ha import wait_for_primary, writes_resumed
from redis import RedisError
from redis_engine import RedisBench, Writer

NETWORK = "trove"
MAX_LAG = 10


def cli(bench: RedisBench, member: str, *args: str, port: int = 6379, timeout: float = 5) -> str:
    """redis-cli inside a member as `app` (password in the environment, not on the command line)."""
    return subprocess.run(
        [
            "podman",
            "exec",
            "-e",
            f"REDISCLI_AUTH={bench.password('app')}",
            member,
            "redis-cli",
            "--no-auth-warning",
            "--tls",
            "--cacert",
            "/etc/trove/tls/ca.crt",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--user",
            "app",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout.strip()


def converged(bench: RedisBench) -> bool:
    """After cluster_apply: one primary with two connected replicas, and all Sentinels name it."""
    bench.playbook("cluster_apply")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            primary = bench.primary()
            if "connected_slaves:2" in cli(bench, primary, "INFO", "replication"):
                return True
        except (RedisError, OSError, KeyError, subprocess.SubprocessError):
            pass
        time.sleep(1)
    return False


def under_writes(bench: RedisBench, first_id: int, fault) -> dict:
    writer = Writer(bench, first_id)
    writer.start()
    time.sleep(2)
    primary = bench.primary()
    figures = fault(primary, writer)
    time.sleep(2)
    after = wait_for_primary(bench)
    result = {**writer.result(), **figures, "primary_before": primary, "primary_after": after}
    result["converged_after_apply"] = converged(bench)
    return result


def server_killed(bench: RedisBench, primary: str, writer: Writer) -> dict:
    killed = time.monotonic()
    subprocess.run(["podman", "exec", primary, "pkill", "-9", "-x", "redis-server"], check=True, capture_output=True)
    return {"writes_again_after_s": writes_resumed(writer, killed)}


def member_killed(bench: RedisBench, primary: str, writer: Writer) -> dict:
    killed = time.monotonic()
    subprocess.run(["podman", "kill", primary], check=True, capture_output=True)
    again = writes_resumed(writer, killed)
    subprocess.run(["podman", "start", primary], check=True, capture_output=True)
    return {"writes_again_after_s": again}


def primary_cut_off(bench: RedisBench, primary: str, writer: Writer) -> dict:
    address = bench.addresses()[primary]
    accepted: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        """Writes to the cut-off primary from inside its member; remembers which it accepted."""
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if cli(bench, primary, "SET", f"app:probe:{n}", "1", timeout=3) == "OK":
                    accepted.append(time.monotonic())
            except subprocess.SubprocessError:
                pass
            time.sleep(0.2)

    cut = time.monotonic()
    subprocess.run(["podman", "network", "disconnect", NETWORK, primary], check=True, capture_output=True)
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    again = writes_resumed(writer, cut)
    time.sleep(max(0.0, cut + MAX_LAG + 5 - time.monotonic()))
    stop.set()
    prober.join(10)
    subprocess.run(["podman", "network", "connect", "--ip", address, NETWORK, primary], check=True, capture_output=True)
    took_writes_for = round(accepted[-1] - cut, 2) if accepted else 0.0
    return {
        "writes_again_after_s": again,
        "cut_off_primary_took_writes_for_s": took_writes_for,
        # Redis checks replica lag once a second: the bound is min-replicas-max-lag plus that.
        "cut_off_primary_within_bound": took_writes_for <= MAX_LAG + 2,
    }


SCENARIOS = {"server_killed": server_killed, "member_killed": member_killed, "primary_cut_off": primary_cut_off}


def broken(result: dict) -> list[str]:
    problems = []
    if result.get("cut_off_primary_within_bound") is False:
        problems.append("the cut-off primary took writes past min-replicas-max-lag")
    if not result["converged_after_apply"]:
        problems.append("no primary with two replicas after cluster_apply")
    return problems


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = RedisBench(Path(tmp), "redis-sentinel.yml", "chaos-redis")
        bench.delete()
        bench.playbook("cluster_apply")
        results = {}
        for n, (name, fault) in enumerate(SCENARIOS.items()):
            results[name] = under_writes(bench, n * 1_000_000 + 1, lambda primary, w, f=fault: f(bench, primary, w))
        bench.delete()
    problems = {name: p for name, result in results.items() if (p := broken(result))}
    print(json.dumps({"engine": "redis", "topology": "sentinel", **results}, indent=2))
    if problems:
        sys.exit(f"invariants broken: {problems}")


if __name__ == "__main__":
    main()
