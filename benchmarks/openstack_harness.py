"""The local OpenStack harness's costs (tools/openstack/harness.sh): time to bring it up from
nothing, time of an `up` that finds it running, memory of its processes, and the smoke test's time.

Starts from `down` (the cloud is rebuilt) and leaves the cloud up. Prints JSON.
Usage: python benchmarks/openstack_harness.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tools/openstack/harness.sh"
STATE = Path(os.environ.get("OPENSTACK_STATE", ROOT / "build/openstack"))


def timed(*command: str, env: dict | None = None) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return round(time.monotonic() - start, 1), done.stdout


def rss_mib_by_service() -> dict[str, int]:
    """RSS of every process in each service's session (gunicorn workers, Erlang's children)."""
    sessions = {int(p.read_text()): p.stem for p in (STATE / "run").glob("*.pid")}
    rss: dict[str, int] = dict.fromkeys(sessions.values(), 0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            status = (proc / "status").read_text()
        except (OSError, IndexError):
            continue
        session = int(fields[3])  # field 6 of stat: the session id
        if session in sessions:
            kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            rss[sessions[session]] += kib
    return {name: kib // 1024 for name, kib in sorted(rss.items())}


def main() -> None:
    subprocess.run([str(HARNESS), "down"], check=True, capture_output=True)
    up_cold, _ = timed(str(HARNESS), "up")
    up_again, _ = timed(str(HARNESS), "up")
    rss = rss_mib_by_service()
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(STATE / "clouds.yaml"), OS_CLOUD="trove-local")
    smoke_total, out = timed(sys.executable, str(ROOT / "tools/openstack/smoke.py"), env=env)
    print(
        json.dumps(
            {
                "benchmark": "openstack_harness",
                "up_from_nothing_s": up_cold,
                "up_when_running_s": up_again,
                "rss_mib_total": sum(rss.values()),
                "rss_mib": rss,
                "smoke_process_s": smoke_total,
                "smoke": json.loads(out),
            }
        )
    )


if __name__ == "__main__":
    main()
