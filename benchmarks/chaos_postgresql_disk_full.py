"""A PostgreSQL replica's data disk filled up under writes, and each documented recovery, as JSON.

The example `replicated` cluster (3 members, async) under a client committing one row every 10 ms
through the multi-host DSN. The container backend's data volumes are directories on the host's
filesystem, without a size: to give one replica a disk that can fill up, its volume is moved onto a
tmpfs of its current size plus 256 MiB (the member stopped, the data copied, a tmpfs mounted over
the volume's directory on the host, the member started). Then, in each scenario, a file fills what
is left (written from the host into the volume) and the primary switches WAL segments, so that the
replica needs room for the next one:

- filler_removed: the file is deleted (what to do when something else filled the disk);
- disk_grown: the filesystem is grown online (`mount -o remount,size=`, as a cloud volume is
  extended and its filesystem resized), the file stays;
- member_replaced: `member_replace.yml` replaces the full replica with a new member on a new volume.

Each reports when the replica stopped streaming, what `cluster_health.yml` said while it was full,
the longest pause of the primary's writes meanwhile, whether the replica streamed again by itself
once it had room (PostgreSQL stops at ENOSPC; else `cluster_apply` starts it, the documented next
step), how long it took from the start of the recovery to catch up, and the acknowledged commits
missing on the primary and on the recovered replica.
Invariants (non-zero exit): health names the replica, the primary's writes do not stop, 0 lost,
the replica catches up, and `cluster_apply` converges afterwards.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chaos import in_member, report, run_scenarios
from chaos_postgresql_ha import member_sql, streams_to_two
from postgresql import BIN, ROOT, Bench, Writer

HEADROOM_MB = 256
FILLER = "/srv/data/filler"


class DiskBench(Bench):
    PREFIX = "chaos-pg-disk"
    small_disk = ""  # the replica whose volume is on a tmpfs

    def replica(self) -> str:
        primary = self.primary()
        return next(m for m in sorted(self.addresses()) if m != primary)

    def health(self) -> str:
        """What cluster_health.yml reports: its problems, or 'healthy'."""
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "playbooks/cluster_health.yml", "-e", f"cluster_file={self.spec}"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"is not healthy: ([^\"'\n]*)", proc.stdout)
        return found.group(1).strip() if proc.returncode and found else ("healthy" if not proc.returncode else "failed")


def host(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def volume_dir(member: str) -> str:
    return host("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", f"{member}-data")


def move_onto_tmpfs(member: str) -> None:
    """The member's data volume becomes a tmpfs with HEADROOM_MB free: a disk that can fill up."""
    path = volume_dir(member)
    host("podman", "stop", "-t", "30", member)
    used_mb = int(host("du", "-sm", path).split()[0])
    owner, mode = host("stat", "-c", "%u %g %a", path).rsplit(" ", 1)
    uid, gid = owner.split()
    with tempfile.TemporaryDirectory() as staging:
        host("cp", "-a", f"{path}/.", staging)
        options = f"size={used_mb + HEADROOM_MB}m,uid={uid},gid={gid},mode={mode}"
        host("mount", "-t", "tmpfs", "-o", options, "chaos-replica-disk", path)
        host("cp", "-a", f"{staging}/.", path)
    host("podman", "start", member)


def off_tmpfs(member: str) -> None:
    """Detach the tmpfs (lazily: the running member keeps its view) so the volume can be removed."""
    path = volume_dir(member)
    if subprocess.run(["mountpoint", "-q", path], check=False).returncode == 0:
        host("umount", "-l", path)


def fill(replica: str, primary: str) -> None:
    """Zeros into the replica's volume until no space is left. Written from the host: pages of a
    tmpfs count against the memory limit of whoever writes them, and the member's would run out."""
    filler = Path(volume_dir(replica)) / FILLER.removeprefix("/srv/data/")
    zeros = ["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "oflag=append", "conv=notrunc"]
    subprocess.run(zeros, check=False, capture_output=True)  # ends with "No space left on device"
    for _ in range(3):  # new WAL segments: the replica must find room for each
        member_sql(primary, "SELECT pg_switch_wal()", timeout=30)  # a loaded machine answers slowly
        time.sleep(1)


def streaming(primary: str, replica: str, lsn: str = "0/0") -> bool:
    query = (
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
        f"AND application_name = '{replica}' AND replay_lsn >= '{lsn}'"
    )
    try:
        return member_sql(primary, query) == "1"
    except subprocess.SubprocessError:
        return False


def wait(check, timeout: float = 180) -> float | None:
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        if check():
            return round(time.monotonic() - started, 2)
        time.sleep(0.5)
    return None


def full_replica(recover):
    """A scenario: the replica's disk filled under writes, then recover(bench, replica) -> the
    member that replicates afterwards."""

    def scenario(bench: DiskBench, primary: str, writer: Writer) -> dict:
        replica = bench.small_disk
        filled = time.monotonic()
        fill(replica, primary)
        stopped = wait(lambda: not streaming(primary, replica), timeout=60)
        health = bench.health()
        time.sleep(max(0.0, filled + 30 - time.monotonic()))
        target = member_sql(primary, "SELECT pg_current_wal_lsn()")
        recovered_at = time.monotonic()
        full = [t for _, t in writer.acked if filled <= t <= recovered_at]
        acked_before = [i for i, t in writer.acked if t <= recovered_at]
        follower = recover(bench, replica)
        # PostgreSQL stops at ENOSPC (PANIC) and systemd does not start it again: cluster_apply does.
        by_itself = wait(lambda: streaming(primary, follower, target), timeout=30) is not None
        if not by_itself:
            bench.playbook("cluster_apply")
        if wait(lambda: streaming(primary, follower, target)) is None:
            caught_up = None
        else:  # from the start of the recovery, the apply included
            caught_up = round(time.monotonic() - recovered_at, 2)
        try:
            rows = in_member(follower, "runuser", "-u", "postgres", "--", "psql", "-XAtd", "appdb", "-c", "TABLE ticks")
            missing = len(set(acked_before) - set(map(int, rows.split())))
        except subprocess.SubprocessError:
            missing = None
        return {
            "replica": replica,
            "replica_stopped_streaming_after_s": stopped,
            "health_while_full": health,
            "health_names_replica": replica in health,
            "primary_longest_write_gap_while_full_s": round(
                max((b - a for a, b in itertools.pairwise(full)), default=float("inf")), 3
            ),
            "recovered_replica": follower,
            "streamed_again_without_apply": by_itself,
            "caught_up_after_recovery_s": caught_up,
            "missing_on_recovered_replica": missing,
            "health_after_recovery": bench.health(),
        }

    return scenario


def remove_filler(bench: DiskBench, replica: str) -> str:
    in_member(replica, "rm", "-f", FILLER)
    return replica


def grow_disk(bench: DiskBench, replica: str) -> str:
    path = volume_dir(replica)
    size_mb = int(host("df", "--output=size", "-BM", path).splitlines()[-1].strip().rstrip("M"))
    host("mount", "-o", f"remount,size={size_mb + 2 * HEADROOM_MB}m", path)
    return replica


def replace_member(bench: DiskBench, replica: str) -> str:
    before = set(bench.addresses())
    off_tmpfs(replica)  # the host cannot remove a volume that is a mount point: an artefact of the tmpfs
    bench.playbook("member_replace", "-e", f"member={replica}")
    return next(iter(set(bench.addresses()) - before))


def broken(result: dict) -> list[str]:
    problems = []
    if result["lost_commits"] or result["missing_on_recovered_replica"] != 0:
        problems.append("acknowledged commits lost")
    if not result["health_names_replica"]:
        problems.append(f"cluster_health did not name the full replica: {result['health_while_full']}")
    if result["primary_longest_write_gap_while_full_s"] > 2:
        problems.append("the primary's writes stopped while the replica was full")
    if result["caught_up_after_recovery_s"] is None:
        problems.append("the replica did not catch up after the recovery")
    if not result["converged_after_apply"]:
        problems.append("no primary with two streaming replicas after cluster_apply")
    return problems


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = DiskBench(Path(tmp), "async")

        def prepare() -> None:
            with bench.connect(",".join(bench.addresses().values())) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")
            bench.small_disk = bench.replica()
            move_onto_tmpfs(bench.small_disk)

        def finish() -> None:
            if bench.small_disk in bench.addresses():
                off_tmpfs(bench.small_disk)

        scenarios = {
            "filler_removed": full_replica(remove_filler),
            "disk_grown": full_replica(grow_disk),
            "member_replaced": full_replica(replace_member),
        }
        # All of them, or those named on the command line.
        scenarios = {name: scenarios[name] for name in sys.argv[1:]} or scenarios
        results = run_scenarios(
            bench, scenarios, writer_class=Writer, healthy=streams_to_two, prepare=prepare, finish=finish
        )
    report({"engine": "postgresql", "topology": "replicated", "fault": "replica data disk full"}, results, broken)


if __name__ == "__main__":
    main()
