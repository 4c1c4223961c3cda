"""End-to-end fixtures: real clusters on podman system containers, driven by the playbooks.

One cluster per engine is applied once per session and shared by the tests of its operations.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class Run:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host."""
        return {
            m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
            for m in RECAP.finditer(self.output)
        }


@dataclass
class Cluster:
    name: str
    spec_file: Path
    home: Path
    env: dict[str, str]
    log_dir: Path
    runs: list[Run] = field(default_factory=list)
    created: Run | None = None

    def playbook(self, name: str, *extra: str, spec_file: Path | None = None) -> Run:
        cmd = [
            str(BIN / "ansible-playbook"),
            f"playbooks/{name}.yml",
            "-e",
            f"cluster_file={spec_file or self.spec_file}",
        ]
        proc = subprocess.run(
            [*cmd, *extra], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900, check=False
        )
        run = Run(proc.returncode, proc.stdout + proc.stderr)
        self.runs.append(run)
        (self.log_dir / f"{len(self.runs):02d}-{name}.log").write_text(run.output)
        return run

    def purge(self) -> None:
        """Delete the cluster and its volumes (also what an interrupted earlier run left)."""
        assert_ok(self.playbook("cluster_delete", "-e", f"confirm={self.name}", "-e", "purge=true"))

    def members(self) -> dict[str, dict]:
        """Members as the trove.dbaas.clusters inventory plugin sees them."""
        proc = subprocess.run(
            [str(BIN / "ansible-inventory"), "--list"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        inv = json.loads(proc.stdout)
        group = "trove_cluster_" + self.name.replace("-", "_")
        hostvars = inv["_meta"]["hostvars"]
        return {h: plain(hostvars[h]) for h in inv.get(group, {}).get("hosts", [])}

    def password(self, user: str) -> str:
        return yaml.safe_load((self.home / "secrets" / self.name / "credentials" / f"{user}.yml").read_text())[user]

    @property
    def ca_file(self) -> Path:
        return self.home / "secrets" / self.name / "tls" / "ca.crt"


def plain(value):
    """Inventory values from container labels are marked unsafe (never templated); unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    return value


def make_cluster(tmp_path_factory: pytest.TempPathFactory, example: str, name: str, **spec: object) -> Cluster:
    work = tmp_path_factory.mktemp(name)
    document = yaml.safe_load((ROOT / "examples" / example).read_text())
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    spec_file = work / "cluster.yml"
    spec_file.write_text(yaml.safe_dump(document))
    env = dict(os.environ, TROVE_HOME=str(work / "home"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    log_dir = Path(os.environ.get("TROVE_TEST_LOGS", work / "logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    return Cluster(name, spec_file, work / "home", env, log_dir)


def wait_for(check, timeout: float = 90, explain: Callable[[], str] | None = None) -> None:
    """Until check() is true; a check that raises counts as not yet. On time out, explain() (say,
    the members' service logs) goes into the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # a server still starting, a member not yet answering
            pass
        if time.monotonic() >= deadline:
            raise AssertionError("timed out" + (":\n" + explain() if explain else ""))
        time.sleep(1)


def older_release(run_in: Callable[..., str], member: str, package: str) -> tuple[str, str]:
    """(installed, older): the package's installed version on `member` and another release that its
    archives offer (`run_in(member, *argv)` returns the output); skips the test when there is none."""
    run_in(member, "apt-get", "update", "-qq")
    installed = run_in(member, "dpkg-query", "-W", "-f=${Version}", package)
    releases = [line.split("|")[1].strip() for line in run_in(member, "apt-cache", "madison", package).splitlines()]
    older = [release for release in releases if release != installed]
    if not older:
        pytest.skip(f"the Debian archive offers no {package} release other than {installed}")
    return installed, older[0]


def assert_ok(run: Run) -> None:
    assert run.rc == 0, run.output[-4000:]


def assert_unchanged(run: Run) -> None:
    """The run succeeded and changed nothing on any host (an idempotent re-run)."""
    assert_ok(run)
    assert {host: c["changed"] for host, c in run.recap().items() if c["changed"]} == {}


def applied_cluster(
    tmp_path_factory: pytest.TempPathFactory, example: str, name: str, *apply_args: str, **spec: object
) -> Cluster:
    """A cluster from an example document (with `spec` changes), applied on fresh members (`apply_args`: -vvv...)."""
    cluster = make_cluster(tmp_path_factory, example, name, **spec)
    cluster.purge()
    cluster.created = cluster.playbook("cluster_apply", *apply_args)
    assert_ok(cluster.created)
    return cluster


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory):
    """The replicated example (3 members), applied once for the session."""
    cluster = applied_cluster(tmp_path_factory, "postgresql-replicated.yml", "e2e-pg")
    yield cluster
    cluster.purge()


def restore_target(request, tmp_path_factory, source: Cluster, example: str, name: str, **spec: object) -> Cluster:
    """A new cluster document next to the source's secrets (a restore may need the source's CA and
    reaches its repository with the same controller key), deleted after the test whatever its outcome."""
    own = make_cluster(tmp_path_factory, example, name, **spec)
    log_dir = source.log_dir / name
    log_dir.mkdir(exist_ok=True)
    target = Cluster(name, own.spec_file, source.home, source.env, log_dir)
    target.purge()
    request.addfinalizer(target.purge)
    return target
