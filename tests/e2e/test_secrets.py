"""Secrets and guest surface on small real clusters (docs/security.md).

A 2-member replicated PostgreSQL cluster, a standalone MariaDB and a standalone Redis are applied,
inspected and have their passwords rotated, every run at -vvv (one cluster at a time). No generated
password or private key may then appear in the playbook output, in a file the runs created or
changed on the controller outside the secrets directory, or in the members' journal, logs, shell
history and process list. Every member must listen only on the ports of SURFACE, run only its
services, and have its own SSH host key and machine id.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Cluster, assert_ok, make_cluster
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

DEFAULT_PORTS = {"postgresql": 5432, "mariadb": 3306, "redis": 6379}

pytestmark = [pytest.mark.postgresql, pytest.mark.mariadb, pytest.mark.redis]

# engine: (example document, cluster name, spec changes, users to rotate or all); as small as each
# example allows.
CLUSTERS = {
    "postgresql": ("postgresql-replicated.yml", "e2e-surface-pg", {"members": 2}, None),
    "mariadb": ("mariadb-standalone.yml", "e2e-surface-maria", {}, None),
    "redis": ("redis-standalone.yml", "e2e-surface-redis", {}, None),
}
# The engine's server process, which must be running on every member.
SERVER_PROCESS = {"postgresql": "postgres", "mariadb": "mariadbd", "redis": "redis-server"}
IMAGES = {
    "postgresql": "localhost/trove-dbaas/postgresql:15",
    "mariadb": "localhost/trove-dbaas/mariadb:10.11",
    "redis": "localhost/trove-dbaas/redis:7",
}
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF="/var/lib/trove-dbaas/containers.conf")

# The one allow-list: what may listen on a member (TCP ports besides SSH and spec.endpoint.port, and
# the proxy ports when spec.endpoint.proxy.enabled) and which services may run there, per engine and
# topology. A port or a long-running service that is not here fails test_only_allowed_ports_listen /
# test_only_the_engine_services_run.
SSH_PORT = 22
BASE_SERVICES = frozenset({"dbus.service", "ssh.service", "systemd-journald.service", "systemd-logind.service"})
SURFACE: dict[tuple[str, str], tuple[frozenset[int], frozenset[str]]] = {
    ("postgresql", "standalone"): (frozenset(), frozenset({"postgresql@15-main.service"})),
    ("postgresql", "replicated"): (frozenset(), frozenset({"postgresql@15-main.service"})),
    # Patroni REST API, etcd clients and peers (docs/ha.md)
    ("postgresql", "ha"): (frozenset({8008, 2379, 2380}), frozenset({"patroni.service", "etcd.service"})),
    ("mariadb", "standalone"): (frozenset(), frozenset({"mariadb.service"})),
    ("mariadb", "replicated"): (frozenset(), frozenset({"mariadb.service"})),
    ("redis", "standalone"): (frozenset(), frozenset({"redis-server.service"})),
    ("redis", "sentinel"): (frozenset({26379}), frozenset({"redis-server.service", "redis-sentinel.service"})),
}
PROXY_SERVICES = frozenset({"haproxy.service"})
# Processes of management agents and configuration daemons; none may run on a member (Ansible
# reaches members over SSH and leaves nothing behind).
AGENTS = frozenset(
    {
        "amazon-ssm-agen",  # ps truncates comm to 15 characters
        "ansible-pull",
        "chef-client",
        "cloud-init",
        "google_guest_ag",
        "guestagent",
        "mcollectived",
        "nrpe",
        "osqueryd",
        "puppet",
        "qemu-ga",
        "salt-minion",
        "trove-guestagen",
        "waagent",
        "zabbix_agentd",
    }
)


def allowed_ports(spec: dict) -> set[int]:
    extra, _services = SURFACE[(spec["engine"], spec["topology"])]
    ports = {SSH_PORT, spec["endpoint"]["port"], *extra}
    proxy = spec["endpoint"].get("proxy", {})
    if proxy.get("enabled"):
        ports |= {proxy.get("primaryPort", 5000), proxy.get("replicaPort", 5001)}
    return ports


def allowed_services(spec: dict) -> set[str]:
    _ports, services = SURFACE[(spec["engine"], spec["topology"])]
    proxy = spec["endpoint"].get("proxy", {})
    return set(BASE_SERVICES | services | (PROXY_SERVICES if proxy.get("enabled") else frozenset()))


# --- scanners -------------------------------------------------------------------------------------

# A private key is found by any line of its base64 body (PEM and OpenSSH keys wrap at 64 or 70):
# one leaked line is a leak, and a body printed with \n escapes still contains every line.
KEY_LINE_MIN = 40
MEMBER_LOGS = (
    "journalctl --no-pager -o cat; "
    "ps -eo args; "
    "find /var/log /root /home /var/lib/postgresql /var/lib/mysql /var/lib/redis -maxdepth 4 -type f "
    r"\( -path '/var/log/*' -o -name '.*history' -o -name '*.log' \) -exec cat {} + 2>/dev/null; true"
)


def public_der(pem: str) -> bytes:
    """The public key (SubjectPublicKeyInfo DER) of a PEM private key; b"" for what cannot be read so."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return b""
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def only_public(line: str, public: bytes) -> bool:
    """A key body line whose bytes all belong to the public key (an EC point, an RSA modulus): the same
    64 characters may stand in the certificate or a signing request, which is no leak."""
    try:
        chunk = base64.b64decode(line, validate=True)
    except binascii.Error:
        return False
    return bool(public) and chunk in public


def secrets_in(directory: Path) -> dict[str, str]:
    """Every generated password and private key body line under a directory, by a label to report."""
    found: dict[str, str] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        if "PRIVATE KEY" in text:
            public = public_der(text)
            for number, line in enumerate(text.splitlines()):
                if not line.startswith("-----") and len(line) >= KEY_LINE_MIN and not only_public(line, public):
                    found[line] = f"{path.name} line {number + 1}"
        elif path.suffix == ".yml":
            for user, password in (yaml.safe_load(text) or {}).items():
                found[str(password)] = f"password of {user} ({path.name})"
    return found


def leaks(text: str, secrets: dict[str, str], where: str) -> list[str]:
    return [f"{where}: {label}" for secret, label in secrets.items() if secret in text]


def controller_files(roots: Iterable[Path], skip: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """Regular files under roots (not under skip) with their mtime and size."""
    skip = [p.resolve() for p in skip]
    files = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath).resolve()
            dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip]
            for name in filenames:
                path = here / name
                try:
                    stat = path.lstat()
                except OSError:
                    continue
                if path.is_file() and not path.is_symlink():
                    files[path] = (stat.st_mtime_ns, stat.st_size)
    return files


def changed_files(before: dict[Path, tuple[int, int]], after: dict[Path, tuple[int, int]]) -> list[Path]:
    return sorted(path for path, stat in after.items() if before.get(path) != stat)


def file_leaks(paths: Iterable[Path], secrets: dict[str, str]) -> list[str]:
    found = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        found += leaks(text, secrets, str(path))
    return found


def podman(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, check=True, timeout=120
    ).stdout


def member_logs(member: str) -> str:
    # wtmp, lastlog and the journal's binary fields are not UTF-8; a secret is ASCII either way.
    out = subprocess.run(
        ["podman", "exec", member, "sh", "-c", MEMBER_LOGS],
        env=PODMAN_ENV,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return out.decode(errors="replace")


# --- the cluster ----------------------------------------------------------------------------------


class Watched:
    """The cluster with a snapshot of the controller files taken before its first run."""

    def __init__(self, cluster: Cluster, work: Path) -> None:
        self.cluster = cluster
        self.roots = [work, cluster.log_dir, ROOT, Path.home() / ".ansible"]
        self.skip = [cluster.home / "secrets", cluster.home / "ssh", ROOT / ".git", ROOT / ".venv"]
        self.before = controller_files(self.roots, self.skip)
        self.secrets: dict[str, str] = {}
        self.rotated: int | None = None  # how many passwords rotate_credentials replaced (None: all)

    def collect(self) -> None:
        """Remember the secrets as they are now (rotation replaces them; old ones must not leak either)."""
        self.secrets |= secrets_in(self.cluster.home / "secrets" / self.cluster.name)
        self.secrets |= secrets_in(self.cluster.home / "ssh")

    def changed(self) -> list[Path]:
        return changed_files(self.before, controller_files(self.roots, self.skip))


@pytest.fixture(scope="module", params=sorted(CLUSTERS))
def watched(request, tmp_path_factory):
    example, name, changes, rotate = CLUSTERS[request.param]
    cluster = make_cluster(tmp_path_factory, example, name, **changes)
    cluster.purge()
    state = Watched(cluster, cluster.spec_file.parent)
    cluster.created = cluster.playbook("cluster_apply", "-vvv")
    assert_ok(cluster.created)
    state.collect()
    assert_ok(cluster.playbook("cluster_status", "-vvv"))
    assert_ok(cluster.playbook("rotate_credentials", "-vvv", *(["-e", f"users={','.join(rotate)}"] if rotate else [])))
    state.rotated = len(rotate) if rotate else None
    state.collect()
    yield state
    cluster.purge()


@pytest.fixture(scope="module")
def spec(watched) -> dict:
    document = yaml.safe_load(watched.cluster.spec_file.read_text())["spec"]
    document.setdefault("endpoint", {}).setdefault("port", DEFAULT_PORTS[document["engine"]])
    return document


# --- secrets --------------------------------------------------------------------------------------


def test_secrets_were_generated(watched):
    labels = list(watched.secrets.values())
    credentials = list((watched.cluster.home / "secrets" / watched.cluster.name / "credentials").glob("*.yml"))
    # every password, and the ones rotated before rotation; the CA key; the controller SSH key
    assert len(credentials) >= 2
    rotated = len(credentials) if watched.rotated is None else watched.rotated
    assert sum(label.startswith("password of ") for label in labels) == len(credentials) + rotated
    assert any(label.startswith("ca.key") for label in labels)
    assert any(label.startswith("id_ed25519 ") for label in labels)


def test_no_secret_in_the_playbook_output(watched):
    assert [run.output.count("\n") > 100 for run in watched.cluster.runs[-3:]] == [True] * 3  # really -vvv
    found = [leak for run in watched.cluster.runs for leak in leaks(run.output, watched.secrets, "output")]
    assert found == []


def test_no_secret_in_controller_files_outside_the_secrets_directory(watched):
    changed = watched.changed()
    assert any(path.suffix == ".log" for path in changed)  # the run logs are scanned too
    assert file_leaks(changed, watched.secrets) == []


def test_no_secret_in_member_logs_history_or_processes(watched):
    found = []
    for member in watched.cluster.members():
        text = member_logs(member)
        assert "ansible" in text.lower()  # the journal holds the module invocations
        found += leaks(text, watched.secrets, member)
    assert found == []


def test_the_scanners_find_a_planted_secret(watched, tmp_path):
    """Each scan above would catch a leak: plant fake secrets where each one looks."""
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "credentials").mkdir(parents=True)
    (secrets_dir / "credentials" / "canary.yml").write_text("canary: Canary0Password1NotReal2xyz\n")
    key_body = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2"
    (secrets_dir / "canary.key").write_text(f"-----BEGIN PRIVATE KEY-----\n{key_body}\n-----END PRIVATE KEY-----\n")
    canaries = secrets_in(secrets_dir)
    assert set(canaries) == {"Canary0Password1NotReal2xyz", key_body}

    assert leaks("msg: Canary0Password1NotReal2xyz", canaries, "output") == ["output: password of canary (canary.yml)"]
    assert leaks(repr(f"key: ...\n{key_body}\n..."), canaries, "output") == ["output: canary.key line 2"]

    before = controller_files([tmp_path], [secrets_dir])
    (tmp_path / "untouched.txt").write_text("nothing here")
    middle = controller_files([tmp_path], [secrets_dir])
    (tmp_path / "written.json").write_text('{"password": "Canary0Password1NotReal2xyz"}')
    after = controller_files([tmp_path], [secrets_dir])
    assert changed_files(before, middle) == [(tmp_path / "untouched.txt").resolve()]
    assert changed_files(middle, after) == [(tmp_path / "written.json").resolve()]
    assert file_leaks(changed_files(middle, after), canaries) == [
        f"{(tmp_path / 'written.json').resolve()}: password of canary (canary.yml)"
    ]
    assert file_leaks(changed_files(before, after), canaries) != []
    # the secrets directory itself is never scanned
    assert all(secrets_dir not in path.parents for path in after)

    member = min(watched.cluster.members())
    token = "CanaryJournal" + os.urandom(6).hex()
    podman("exec", member, "logger", "-t", "canary", f"plant {token}")
    podman("exec", member, "sh", "-c", f"echo 'psql {token}x' >> /root/.bash_history")
    try:
        planted = {token: "journal canary", token + "x": "history canary"}
        assert sorted(leaks(member_logs(member), planted, member)) == [
            f"{member}: history canary",
            f"{member}: journal canary",
        ]
    finally:
        podman("exec", member, "sed", "-i", f"/{token}/d", "/root/.bash_history")


# --- guest surface --------------------------------------------------------------------------------


def listening_ports(member: str) -> set[int]:
    ports = set()
    for line in podman("exec", member, "ss", "-Hltn").splitlines():
        local = line.split()[3]  # State Recv-Q Send-Q Local:Port Peer:Port
        ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def test_only_allowed_ports_listen(watched, spec):
    members = watched.cluster.members()
    assert len(members) == spec.get("members", 1)
    for member in members:
        ports = listening_ports(member)
        assert {SSH_PORT, spec["endpoint"]["port"]} <= ports, member
        assert ports - allowed_ports(spec) == set(), member
        assert podman("exec", member, "ss", "-Hlun").strip() == "", member  # no UDP service either


def test_only_the_engine_services_run(watched, spec):
    for member in watched.cluster.members():
        units = podman(
            "exec", member, "systemctl", "list-units", "--type=service", "--state=running", "--no-legend", "--plain"
        )
        running = {line.split()[0] for line in units.splitlines() if line.strip()}
        assert "ssh.service" in running
        assert running - allowed_services(spec) == set(), member


def test_no_management_agent_runs(watched, spec):
    for member in watched.cluster.members():
        processes = set(podman("exec", member, "ps", "-eo", "comm=").split())
        assert {SERVER_PROCESS[spec["engine"]], "sshd"} <= processes, member
        assert processes & AGENTS == set(), member


def test_members_have_their_own_host_keys_and_machine_id(watched, spec):
    seen: dict[str, set[str]] = {"machine-id": set(), "host keys": set()}
    members = sorted(watched.cluster.members())
    if len(members) < 2:
        pytest.skip("one member: the 2-member PostgreSQL cluster compares them")
    for member in members:
        seen["machine-id"].add(podman("exec", member, "cat", "/etc/machine-id").strip())
        keys = podman("exec", member, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")
        blobs = sorted(line.split()[1] for line in keys.splitlines() if line.strip())
        assert len(blobs) >= 1, member
        seen["host keys"].add(" ".join(blobs))
        # every key type differs too, not only the set
        for blob in blobs:
            assert sum(blob in s for s in seen["host keys"]) == 1, member
    assert {k: len(v) for k, v in seen.items()} == {"machine-id": len(members), "host keys": len(members)}
    # the image itself carries neither: both are made on the member's first boot
    image = podman("image", "inspect", "--format", "{{.Id}}", IMAGES[spec["engine"]]).strip()
    shipped = podman("run", "--rm", "--entrypoint", "sh", image, "-c", "cat /etc/machine-id; ls /etc/ssh")
    assert "ssh_host_" not in shipped
    assert not (seen["machine-id"] & set(shipped.split()))
