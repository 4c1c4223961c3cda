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
cluster must again have a primary, as the Sentinels name it, with two connected replicas.
The run exits non-zero when that fails or the cut-off primary kept taking writes past the bound.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from chaos import Poll, cut_off, in_member, killed_in_member, member_killed, run, writes_resumed
from redis_engine import RedisBench, Writer

MAX_LAG = 10


def cli(bench: RedisBench, member: str, *args: str, user: str = "app", timeout: float = 5) -> str:
    """redis-cli inside a member (the password in the environment, not on the command line)."""
    tls = ["--tls", "--cacert", "/etc/trove/tls/ca.crt", "-h", "127.0.0.1", "-p", "6379"]
    argv = ["redis-cli", "--no-auth-warning", *tls, "--user", user, *args]
    return in_member(member, *argv, env={"REDISCLI_AUTH": bench.password(user)}, timeout=timeout)


def server_killed(bench: RedisBench, primary: str, writer: Writer) -> dict:
    return killed_in_member(writer, primary, "pkill", "-9", "-x", "redis-server")


def primary_cut_off(bench: RedisBench, primary: str, writer: Writer) -> dict:
    probe_ids = iter(range(1, 10**9))

    def takes_a_write() -> bool:
        """A write to the cut-off primary from inside its member."""
        try:
            return cli(bench, primary, "SET", f"app:probe:{next(probe_ids)}", "1", timeout=3) == "OK"
        except subprocess.SubprocessError:
            return False

    with cut_off(bench, primary) as cut:
        probe = Poll(takes_a_write)
        probe.start()
        again = writes_resumed(writer, cut)
        time.sleep(max(0.0, cut + MAX_LAG + 5 - time.monotonic()))
        accepted = probe.stop()
    took_writes_for = round(accepted[-1] - cut, 2) if accepted else 0.0
    return {
        "writes_again_after_s": again,
        "cut_off_primary_took_writes_for_s": took_writes_for,
        # Redis checks replica lag once a second: the bound is min-replicas-max-lag plus that.
        "cut_off_primary_within_bound": took_writes_for <= MAX_LAG + 2,
    }


def two_replicas(bench: RedisBench):
    return lambda primary: "connected_slaves:2" in cli(bench, primary, "INFO", "replication", user="admin")


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
        scenarios = {"server_killed": server_killed, "member_killed": member_killed, "primary_cut_off": primary_cut_off}
        header = {"engine": "redis", "topology": "sentinel"}
        run(bench, header, scenarios, writer_class=Writer, healthy=two_replicas(bench), broken=broken)


if __name__ == "__main__":
    main()
