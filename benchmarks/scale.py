"""How apply time grows with the number of clusters applied at once, as JSON.

Each step applies 1, 5, then 10 PostgreSQL replicated clusters of 3 small members (scale-1 ...):
one `ansible-playbook cluster_apply` per cluster, all started together, as an operator (or AWX,
one job per cluster) applies several documents. A playbook takes one document, so parallel runs
are the way to apply several. Reports each cluster's wall time, the step's total, and the total's
growth against one cluster; every step starts from no cluster and ends by deleting them.

SCALE_STEPS ("1,5,10") picks the steps; SCALE_PROFILE picks the Ansible settings measured:
`configured` (ansible.cfg as it is) or `plain` (Ansible's defaults instead of its pipelining and
SSH connection reuse: what the settings in docs/performance.md save).
Run with `make scale` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SSH_TIMEOUT = int(os.environ.get("SCALE_SSH_TIMEOUT", "600"))
PROFILES = {
    "configured": {},
    "plain": {
        "ANSIBLE_PIPELINING": "False",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
    },
}


def spec(work: Path, name: str) -> Path:
    document = yaml.safe_load((ROOT / "examples/postgresql-replicated.yml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["placement"] = [{"backend": "container", "container": {"cpus": 1, "memory": "512m"}}]
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def controller_cpu() -> float:
    """CPU seconds used so far by the finished ansible-playbook runs (and their workers, ssh)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def playbook(env: dict, name: str, path: Path, *extra: str) -> float | None:
    """Seconds the playbook took; None (its output's end on stderr) when it failed."""
    started = time.monotonic()
    cmd = [str(BIN / "ansible-playbook"), f"playbooks/{name}.yml", "-e", f"cluster_file={path}", *extra]
    # Members of many clusters boot at once on a loaded host: give SSH more than the default 120 s.
    cmd += ["-e", f"host_container_ssh_timeout={SSH_TIMEOUT}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        print(f"{name} {path.stem} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return round(time.monotonic() - started, 1)


def in_parallel(env: dict, name: str, paths: list[Path]) -> list[float]:
    """The playbook once per document, all at once; cluster_delete purges what it deletes."""
    delete = lambda p: ("-e", f"confirm={p.stem}", "-e", "purge=true") if name == "cluster_delete" else ()  # noqa: E731
    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(lambda p: playbook(env, name, p, *delete(p)), paths))


def step(env: dict, work: Path, count: int) -> dict:
    paths = [spec(work, f"scale-{n}") for n in range(1, count + 1)]
    in_parallel(env, "cluster_delete", paths)
    started, cpu = time.monotonic(), controller_cpu()
    try:
        per_cluster = in_parallel(env, "cluster_apply", paths)
        total, cpu = round(time.monotonic() - started, 1), round(controller_cpu() - cpu, 1)
    finally:
        in_parallel(env, "cluster_delete", paths)
    return {
        "total_s": total,
        "per_cluster_s": per_cluster,
        "failed": per_cluster.count(None),
        "controller_cpu_s_per_cluster": round(cpu / count, 1),
        "load_average_after": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    profile = os.environ.get("SCALE_PROFILE", "configured")
    counts = [int(n) for n in os.environ.get("SCALE_STEPS", "1,5,10").split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TROVE_HOME=f"{tmp}/home", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), **PROFILES[profile])
        # The first step (one cluster) creates the controller's SSH key that the parallel runs then share.
        steps = {}
        for count in counts:
            steps[count] = step(env, Path(tmp), count)
            print(json.dumps({count: steps[count]}), file=sys.stderr, flush=True)
    first = steps[counts[0]]["total_s"] / counts[0]
    for count, figures in steps.items():
        figures["growth_vs_linear"] = round(figures["total_s"] / (first * count), 2)
    print(json.dumps({"clusters_of": 3, "profile": profile, "ssh_timeout_s": SSH_TIMEOUT, "steps": steps}, indent=2))
    if any(figures["failed"] for figures in steps.values()):
        sys.exit("some applies failed")


if __name__ == "__main__":
    main()
