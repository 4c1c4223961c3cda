"""PostgreSQL backup and restore throughput on real members, printed as JSON.

A standalone cluster with backups enabled is loaded with pgbench (scale BENCH_SCALE, 40 by default:
about 600 MB). Then, on the same data:

- a full backup through `backup.yml`, and the same backup run by hand on the repository member
  (`pgbackrest --stanza=... --type=full backup`);
- a restore of the latest state into a new cluster through `restore.yml` (creating the member,
  restoring, recovering, converging), and the same restore run by hand
  (`pgbackrest --stanza=... restore` into an empty data directory of the source member).

MB/s is the database size (pgBackRest's `size` of the backup) over wall-clock seconds.
Run with `make bench` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "bench-bk"
SCALE = int(os.environ.get("BENCH_SCALE", "40"))
DATA_DIR = "/srv/data/postgresql/15/main"


def document(name: str, backup: bool) -> dict:
    doc = yaml.safe_load((ROOT / "examples/postgresql-standalone.yml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["placement"] = [{"backend": "container", "container": {"cpus": 2, "memory": "2g"}}]
    doc["spec"]["backup"] = {"enabled": backup}
    return doc


class Bench:
    def __init__(self, work: Path):
        self.work = work
        self.env = dict(os.environ, TROVE_HOME=str(work / "home"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env['PATH']}"

    def spec(self, name: str, backup: bool) -> Path:
        path = self.work / f"{name}.yml"
        path.write_text(yaml.safe_dump(document(name, backup)))
        return path

    def playbook(self, name: str, spec: Path, *extra: str) -> float:
        started = time.monotonic()
        cmd = [str(BIN / "ansible-playbook"), f"playbooks/{name}.yml", "-e", f"cluster_file={spec}", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"{name} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        return time.monotonic() - started

    def delete(self, spec: Path, name: str) -> None:
        self.playbook("cluster_delete", spec, "-e", f"confirm={name}", "-e", "purge=true")


def on(member: str, *argv: str) -> str:
    proc = subprocess.run(["podman", "exec", member, *argv], capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{member}: {' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def as_postgres(member: str, *argv: str) -> str:
    return on(member, "runuser", "-u", "postgres", "--", *argv)


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def last_backup_mb(repo: str) -> float:
    info = json.loads(as_postgres(repo, "pgbackrest", f"--stanza={NAME}", "--output=json", "info"))
    return info[0]["backup"][-1]["info"]["size"] / 2**20


def figures(mb: float, seconds: float) -> dict:
    return {"seconds": round(seconds, 1), "mb_per_s": round(mb / seconds, 1)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="trove-bench-bk-") as tmp:
        bench = Bench(Path(tmp))
        source, target = bench.spec(NAME, True), bench.spec(f"{NAME}-r", False)
        primary, repo = f"{NAME}-0", f"{NAME}-repo"
        bench.delete(source, NAME)
        bench.delete(target, f"{NAME}-r")
        try:
            bench.playbook("cluster_apply", source)
            as_postgres(primary, "pgbench", "-i", "-q", "-s", str(SCALE), "postgres")
            as_postgres(primary, "psql", "-c", "CHECKPOINT")

            backup_playbook = bench.playbook("backup", source, "-e", "type=full")
            mb = last_backup_mb(repo)
            backup_manual = timed(lambda: as_postgres(repo, "pgbackrest", f"--stanza={NAME}", "--type=full", "backup"))

            restore_playbook = bench.playbook("restore", target, "-e", f"source={NAME}")

            on(primary, "systemctl", "stop", "postgresql@15-main")
            on(primary, "sh", "-c", f"rm -rf {DATA_DIR}/*")
            restore_manual = timed(lambda: as_postgres(primary, "pgbackrest", f"--stanza={NAME}", "restore"))
            on(primary, "systemctl", "start", "postgresql@15-main")
        finally:
            bench.delete(target, f"{NAME}-r")
            bench.delete(source, NAME)
    print(
        json.dumps(
            {
                "pgbench_scale": SCALE,
                "database_mb": round(mb, 1),
                "backup_full": {
                    "backup.yml": figures(mb, backup_playbook),
                    "pgbackrest by hand": figures(mb, backup_manual),
                },
                "restore_latest": {
                    "restore.yml (new member, restore, recovery, converge)": figures(mb, restore_playbook),
                    "pgbackrest restore by hand": figures(mb, restore_manual),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
