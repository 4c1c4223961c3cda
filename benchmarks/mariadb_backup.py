"""MariaDB backup and restore throughput on real members, printed as JSON.

A standalone cluster with backups enabled is loaded with BENCH_ROWS rows (600000 by default: about
600 MB of InnoDB data and indexes, as information_schema counts them). Then, on the same data:

- a full backup through `backup.yml`, and the same backup run by hand from the controller
  (`mariadb-backup --backup --stream=mbstream` on the member over SSH, piped over SSH into
  `mbstream -x` on the repository member);
- an incremental backup through `backup.yml` after a small change;
- a restore of the latest state into a new cluster through `restore.yml` (creating the member,
  restoring, replaying the binary log, converging), and the same restore run by hand on the source
  member (the backups copied from the repository, `mariadb-backup --prepare`, `--move-back` into an
  empty data directory, the server started; no binary log replay).

The restores are checked by counting rows: restore.yml must bring back the commit made after the
last backup (from the binary log archive), the restore by hand the rows of the backups.
MB/s is the data size over wall-clock seconds.
Run with `make bench` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from postgresql_backup import ROOT, Bench, figures, on, timed

NAME = "bench-mbk"
ROWS = int(os.environ.get("BENCH_ROWS", "600000"))
BATCH = 100000
SOCKET = "/run/mysqld/mysqld.sock"
DATA_DIR = "/srv/data/mariadb"
BACKUPS = "/srv/data/backup/base"
BY_HAND = "/srv/data/backup/by-hand"
RESTORE_DIR = "/srv/data/restore-by-hand"
BACKUP_BY_HAND = (
    f"work=$(mktemp -d); mariadb-backup --backup --user=root --socket={SOCKET} --stream=mbstream"
    ' --target-dir="$work"; status=$?; rm -rf "$work"; exit $status'
)


class MariaDBBench(Bench):
    def spec(self, name: str, backup: bool) -> Path:
        doc = yaml.safe_load((ROOT / "examples/mariadb-replicated.yml").read_text())
        doc["metadata"]["name"] = name
        doc["spec"].update(topology="standalone", members=1, backup={"enabled": backup})
        doc["spec"]["placement"] = [{"backend": "container", "container": {"cpus": 2, "memory": "2g"}}]
        path = self.work / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def ssh(self, member: str, script: str) -> list[str]:
        """The argv an operator runs on the controller to reach a member (the key the playbooks use)."""
        networks = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        address = subprocess.run(
            ["podman", "inspect", "-f", networks, member], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        key = Path(self.env["TROVE_HOME"]) / "ssh/id_ed25519"
        options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        return ["ssh", "-i", str(key), *options, "-o", "LogLevel=ERROR", f"root@{address}", script]

    def piped(self, source: tuple[str, str], sink: tuple[str, str]) -> None:
        """source's script piped into sink's script, each on its member over SSH; both must succeed."""
        # mariadb-backup logs every file it copies: its stderr goes to a file, not a pipe that could fill.
        with tempfile.TemporaryFile() as errors:
            producer = subprocess.Popen(
                self.ssh(*source), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
            )
            consumer = subprocess.run(self.ssh(*sink), stdin=producer.stdout, capture_output=True, check=False)
            producer.stdout.close()
            if producer.wait() or consumer.returncode:
                errors.seek(0)
                said = errors.read()[-2000:].decode() + consumer.stderr[-2000:].decode()
                sys.exit(f"{source[1]} | {sink[1]} failed:\n{said}")


def sql(member: str, statement: str) -> str:
    return on(member, "mariadb", "--no-defaults", f"--socket={SOCKET}", "--user=root", "-N", "-B", "-e", statement)


def load(member: str) -> None:
    # The load is not what is measured: kept out of the binary log (and so out of its archive).
    batches = [
        f"INSERT INTO bench.t SELECT seq, REPEAT(MD5(seq), 30) FROM seq_{low}_to_{min(low + BATCH - 1, ROWS)};"
        for low in range(1, ROWS + 1, BATCH)
    ]
    sql(
        member,
        "SET SESSION sql_log_bin = 0; CREATE DATABASE bench; USE bench;"
        " CREATE TABLE bench.t (id INT PRIMARY KEY, payload VARCHAR(1000) NOT NULL);"
        f" {' '.join(batches)} ANALYZE TABLE bench.t;",
    )


def data_mb(member: str) -> float:
    size = sql(
        member,
        "SELECT SUM(data_length + index_length) FROM information_schema.TABLES WHERE table_schema = 'bench'",
    )
    return int(size) / 2**20


def count(member: str) -> int:
    return int(sql(member, "SELECT COUNT(*) FROM bench.t"))


def archived(primary: str, repo: str, timeout: float = 120) -> None:
    """Waits until the binary log archive holds the primary's last transaction: restore.yml replays
    it from the backup's position, which the archive must have reached."""
    sql(primary, "FLUSH LOCAL BINARY LOGS")
    pos = sql(primary, "SELECT @@gtid_binlog_pos").strip()
    dump = 'for f in /srv/data/backup/binlog/*/binlog.[0-9]*; do mariadb-binlog "$f" 2> /dev/null || true; done'
    deadline = time.monotonic() + timeout
    while f"GTID {pos} " not in on(repo, "sh", "-c", dump):
        if time.monotonic() > deadline:
            sys.exit(f"the binary log archive did not reach GTID {pos} in {timeout:.0f} s")
        time.sleep(2)


def load_average() -> float:
    """The 1-minute load average (the machine may be shared)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def restore_by_hand(bench: MariaDBBench, repo: str, member: str) -> None:
    """The latest backup chain (full, then incrementals) copied to the member, prepared, moved back."""
    chain = on(repo, "sh", "-c", f"cd {BACKUPS} && ls -1d 2*").split()
    chain = chain[max(i for i, label in enumerate(chain) if label.endswith("F")) :]
    full = shlex.quote(chain[0])
    bench.piped(
        (repo, f"tar -C {BACKUPS} -cf - {' '.join(map(shlex.quote, chain))}"),
        (member, f"rm -rf {RESTORE_DIR} && mkdir -p {RESTORE_DIR} && tar -C {RESTORE_DIR} -xf -"),
    )
    incrementals = " ".join(
        f"&& mariadb-backup --prepare --target-dir={full} --incremental-dir={shlex.quote(i)}" for i in chain[1:]
    )
    on(
        member,
        "sh",
        "-c",
        f"set -e; systemctl stop mariadb; rm -rf {DATA_DIR}; install -d -o mysql -g mysql -m 0750 {DATA_DIR};"
        f" cd {RESTORE_DIR} && mariadb-backup --prepare --target-dir={full} {incrementals};"
        f" mariadb-backup --move-back --target-dir={full} --datadir={DATA_DIR}; chown -R mysql:mysql {DATA_DIR};"
        f" rm -rf {RESTORE_DIR}; systemctl start mariadb",
    )


def main() -> None:
    loads = []
    with tempfile.TemporaryDirectory(prefix="trove-bench-mbk-") as tmp:
        bench = MariaDBBench(Path(tmp))
        source, target = bench.spec(NAME, True), bench.spec(f"{NAME}-r", False)
        primary, repo, restored = f"{NAME}-0", f"{NAME}-repo", f"{NAME}-r-0"
        bench.delete(source, NAME)
        bench.delete(target, f"{NAME}-r")
        try:
            bench.playbook("cluster_apply", source)
            load(primary)
            mb = data_mb(primary)
            loads.append(load_average())

            backup_playbook = bench.playbook("backup", source, "-e", "type=full")
            backup_manual = timed(
                lambda: bench.piped(
                    (primary, BACKUP_BY_HAND),
                    (repo, f"rm -rf {BY_HAND} && mkdir -p {BY_HAND} && mbstream -x -C {BY_HAND}"),
                )
            )
            on(repo, "rm", "-rf", BY_HAND)
            loads.append(load_average())

            sql(
                primary,
                f"UPDATE bench.t SET payload = '' WHERE id <= 1000; INSERT INTO bench.t VALUES ({ROWS + 1}, '')",
            )
            backed_up = count(primary)
            backup_incremental = bench.playbook("backup", source, "-e", "type=incr")
            # A commit after the last backup, as on any live cluster: restore.yml replays it from the archive.
            sql(primary, f"INSERT INTO bench.t VALUES ({ROWS + 2}, '')")
            rows = count(primary)
            archived(primary, repo)

            restore_playbook = bench.playbook("restore", target, "-e", f"source={NAME}")
            rows_playbook = count(restored)
            loads.append(load_average())

            restore_manual = timed(lambda: restore_by_hand(bench, repo, primary))
            rows_manual = count(primary)
            loads.append(load_average())
            if (rows_playbook, rows_manual) != (rows, backed_up):
                sys.exit(
                    f"rows: source {rows} ({backed_up} at the incremental backup), restore.yml {rows_playbook},"
                    f" by hand {rows_manual}"
                )
        finally:
            bench.delete(target, f"{NAME}-r")
            bench.delete(source, NAME)
    print(
        json.dumps(
            {
                "rows": {"backed_up": backed_up, "latest": rows},
                "data_mb": round(mb, 1),
                "load_average": {"min": min(loads), "max": max(loads), "samples": len(loads)},
                "backup_full": {
                    "backup.yml": figures(mb, backup_playbook),
                    "mariadb-backup | mbstream by hand": figures(mb, backup_manual),
                },
                "backup_incremental": {"backup.yml": {"seconds": round(backup_incremental, 1)}},
                "restore_latest": {
                    "restore.yml (new member, restore, binary log replay, converge)": figures(mb, restore_playbook),
                    "mariadb-backup prepare, move-back, start by hand": figures(mb, restore_manual),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
