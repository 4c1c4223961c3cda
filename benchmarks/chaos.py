"""What the fault runs of `make chaos` share: a fault injected under writes, the outage the client
saw, and whether `cluster_apply` brings the cluster back to its document afterwards."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

NETWORK = "trove"


def writes_resumed(writer, since: float, timeout: float = 120) -> float:
    """Seconds from the fault to the end of the outage it caused: the first pause of more than
    0.5 s between acknowledged writes from then on (a reply in flight may still arrive just after
    the fault). 0 when the writes went on for 10 s without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [since, *(t for _, t in writer.acked if t > since)]
        pause = next((b for a, b in itertools.pairwise(times) if b - a > 0.5), None)
        if pause is not None:
            return round(pause - since, 2)
        if times[-1] > since + 10:
            return 0.0
        time.sleep(0.1)
    return float("inf")


def wait_for_primary(bench, timeout: float = 120) -> str:
    """The member that takes writes, once there is one again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bench.primary()
        except Exception:  # none writable yet (PostgreSQL), Sentinel names none yet (Redis)
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


class Poll(threading.Thread):
    """Calls check() every 0.2 s until stopped; remembers when it returned true."""

    def __init__(self, check: Callable[[], bool]):
        super().__init__(daemon=True)
        self.check, self.true_at, self.stopping = check, [], threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.check():
                self.true_at.append(time.monotonic())
            time.sleep(0.2)

    def stop(self) -> list[float]:
        self.stopping.set()
        self.join(10)
        return self.true_at


@contextmanager
def cut_off(bench, member: str) -> Iterator[float]:
    """The member off the project network (yields when), then back with the same address."""
    address = bench.addresses()[member]
    cut = time.monotonic()
    subprocess.run(["podman", "network", "disconnect", NETWORK, member], check=True, capture_output=True)
    try:
        yield cut
    finally:
        subprocess.run(
            ["podman", "network", "connect", "--ip", address, NETWORK, member], check=True, capture_output=True
        )


def in_member(member: str, *argv: str, env: dict[str, str] | None = None, timeout: float = 5) -> str:
    """A command inside a member (`podman exec`): works while the member is cut off the network."""
    options = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return subprocess.run(
        ["podman", "exec", *options, member, *argv], capture_output=True, text=True, timeout=timeout, check=True
    ).stdout.strip()


def killed_in_member(writer, member: str, *argv: str) -> dict:
    """A kill command run inside the member, and when writes went on."""
    killed = time.monotonic()
    in_member(member, *argv)
    return {"writes_again_after_s": writes_resumed(writer, killed)}


def member_killed(bench, primary: str, writer) -> dict:
    """The primary's whole member killed, started again once writes resume elsewhere."""
    killed = time.monotonic()
    subprocess.run(["podman", "kill", primary], check=True, capture_output=True)
    again = writes_resumed(writer, killed)
    subprocess.run(["podman", "start", primary], check=True, capture_output=True)
    return {"writes_again_after_s": again}


def converged(bench, healthy: Callable[[str], bool]) -> bool:
    """After cluster_apply, healthy(primary) within 2 minutes (False when the apply fails)."""
    try:
        bench.playbook("cluster_apply")
    except SystemExit as failed:  # reported; the next scenarios and the clean-up still run
        print(failed, file=sys.stderr)
        return False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if healthy(bench.primary()):
                return True
        except Exception:  # a member still starting
            pass
        time.sleep(1)
    return False


def run_scenarios(bench, scenarios: dict, *, writer_class, healthy, prepare=lambda: None, finish=lambda: None) -> dict:
    """Each scenario's fault(bench, primary, writer) under writes on a fresh cluster, then
    `cluster_apply`; finish() runs before the cluster is deleted."""
    bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    bench.playbook("cluster_apply")
    prepare()
    results = {}
    try:
        for n, (name, fault) in enumerate(scenarios.items()):
            writer = writer_class(bench, n * 1_000_000 + 1)
            writer.start()
            time.sleep(2)
            primary = bench.primary()
            figures = fault(bench, primary, writer)
            time.sleep(2)
            after = wait_for_primary(bench)
            results[name] = {**writer.result(), **figures, "primary_before": primary, "primary_after": after}
            results[name]["converged_after_apply"] = converged(bench, healthy)
            print(json.dumps({name: results[name]}), file=sys.stderr)  # progress, kept if a later one fails
    finally:
        finish()
        bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    return results


def report(header: dict, results: dict, broken) -> None:
    """Prints the JSON; exits non-zero with what broken(result) finds in any scenario."""
    print(json.dumps({**header, **results}, indent=2))
    problems = {name: p for name, result in results.items() if (p := broken(result))}
    if problems:
        sys.exit(f"invariants broken: {problems}")


def run(bench, header: dict, scenarios: dict, *, writer_class, healthy, broken, **hooks) -> None:
    """run_scenarios, then report."""
    report(header, run_scenarios(bench, scenarios, writer_class=writer_class, healthy=healthy, **hooks), broken)
