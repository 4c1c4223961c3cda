from __future__ import annotations

DOCUMENTATION = r"""
name: clusters
short_description: Database cluster members discovered from podman container labels and OpenStack metadata
version_added: 0.1.0
description:
  - Builds an inventory of trove.dbaas cluster members by listing labelled containers on one or more podman hosts
    and labelled servers in one or more OpenStack clouds (O(openstack_clouds)).
  - A server's C(trove.dbaas.*) metadata holds the same labels (Nova metadata keys allow no C(/)); its
    C(ansible_host) is its address on the management network, C(trove_address) the one on the tenant network.
  - Every member container carries the C(trove.dbaas/*) labels written by the container backend
    (C(cluster), C(member), C(engine), C(api-version), C(backend), C(address), C(network)).
    The labels are the only state; nothing is stored locally.
  - One host per member, named after the C(trove.dbaas/member) label, reachable at the C(trove.dbaas/address) label.
  - Hosts are added to the groups C(trove), C(trove_cluster_<cluster>), C(trove_engine_<engine>),
    C(trove_backend_<backend>) and C(trove_role_<role>); characters invalid in group names (such as C(-)) become C(_).
  - The C(trove.dbaas/role) label (C(database) when missing) tells database members from a cluster's
    backup repository member (C(repository)); it is the host variable C(trove_role).
    The cluster group gets the variable C(trove_cluster_name) holding the original cluster name.
  - Containers lacking a required label (C(cluster), C(member), C(engine), C(address)) are skipped with a warning.
  - The configuration file name must end in C(clusters.yml) or C(clusters.yaml), for example C(trove.clusters.yml).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description:
      - Marks this file as a configuration for this plugin.
      - The short name V(clusters) only works when the plugin is enabled explicitly in
        C(enable_plugins); the C(auto) inventory plugin needs the fully qualified name.
    type: str
    required: true
    choices: [trove.dbaas.clusters, clusters]
  podman_hosts:
    description:
      - Hosts whose podman is queried for member containers, one C(podman ps) call each.
      - An item is either the string C(localhost) (podman runs on the controller) or a dictionary with the keys
        C(name) (required, reported as C(trove_podman_host)), C(ssh_host) (defaults to C(name)) and C(ssh_user).
      - For a remote host the plugin runs C(ssh [ssh_user@]ssh_host podman ...) in batch mode, so key-based
        authentication must already work for the controller user.
      - A dictionary named C(localhost) without C(ssh_host) is treated like the string C(localhost).
    type: list
    elements: raw
    default: [localhost]
  podman_executable:
    description: Name or path of the podman binary, on the controller or on the remote podman host.
    type: str
    default: podman
    env:
      - name: TROVE_PODMAN_EXECUTABLE
    ini:
      - section: trove_dbaas_clusters
        key: podman_executable
  containers_conf:
    description:
      - Path to a containers.conf passed to podman as the E(CONTAINERS_CONF) environment variable.
      - For a remote podman host the path is on that host.
      - When unset podman uses its own defaults.
      - When set and missing on the controller (no cluster or image was made there yet), the local
        podman host lists no members and podman is not run.
    type: path
    env:
      - name: TROVE_CONTAINERS_CONF
    ini:
      - section: trove_dbaas_clusters
        key: containers_conf
  ssh_private_key_file:
    description:
      - Private key set as C(ansible_ssh_private_key_file) on every member.
      - When unset, the key the cluster playbooks create is used if it exists
        (C($TROVE_HOME/ssh/id_ed25519), C(~/.local/share/trove-dbaas/ssh/id_ed25519) by default).
    type: path
    env:
      - name: TROVE_SSH_KEY
    ini:
      - section: trove_dbaas_clusters
        key: ssh_private_key_file
  ansible_user:
    description: Value of C(ansible_user) on every member.
    type: str
    default: root
  clusters:
    description: Only include members of these clusters. All clusters are included when unset or empty.
    type: list
    elements: str
  openstack_clouds:
    description:
      - Cloud names in clouds.yaml whose servers are listed (openstacksdk on the controller); members of one
        cluster may be spread over several clouds. The host variable C(trove_cloud) names a member's cloud.
    type: list
    elements: str
    default: []
  command_timeout:
    description: Seconds to wait for each podman (or ssh) command before failing.
    type: int
    default: 60
"""

EXAMPLES = r"""
---
# inventories/local/trove.clusters.yml: members on the controller's podman
plugin: trove.dbaas.clusters
podman_hosts:
  - localhost

---
# Members on podman and in two OpenStack clouds (clouds.yaml names)
plugin: trove.dbaas.clusters
podman_hosts: [localhost]
openstack_clouds: [cloud-a, cloud-b]

---
# Two podman hosts, only the pg-demo cluster, extra groups by container state and member name
plugin: trove.dbaas.clusters
podman_hosts:
  - localhost
  - name: db-host-2
    ssh_host: 192.0.2.20
    ssh_user: admin
containers_conf: /etc/trove/containers.conf
ssh_private_key_file: ~/.ssh/trove_ed25519
clusters:
  - pg-demo
keyed_groups:
  - key: trove_state
    prefix: trove_state
groups:
  trove_primary_candidates: trove_member.endswith('-0')
"""

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.utils.display import Display
from ansible_collections.trove.dbaas.plugins.module_utils import _members

try:  # only openstack_clouds needs openstacksdk
    import openstack
except ImportError:
    openstack = None

display = Display()

LABEL_PREFIX = "trove.dbaas/"
REQUIRED_LABELS = ("cluster", "member", "engine", "address")
CONFIG_SUFFIXES = ("clusters.yml", "clusters.yaml")
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


Runner = Callable[[list[str], dict[str, str] | None, int], CommandResult]


@dataclass(frozen=True)
class PodmanHost:
    name: str
    ssh_host: str | None = None
    ssh_user: str | None = None

    @property
    def is_local(self) -> bool:
        return self.ssh_host is None


@dataclass(frozen=True)
class Member:
    cluster: str
    member: str
    engine: str
    address: str
    backend: str | None
    api_version: str | None
    network: str | None
    state: str | None
    container_id: str | None
    podman_host: str
    role: str = "database"
    ssh_address: str | None = None
    cloud: str | None = None

    @property
    def where(self) -> str:
        return f"cloud '{self.cloud}'" if self.cloud else f"podman host '{self.podman_host}'"


def run_command(argv: list[str], env: dict[str, str] | None, timeout: int) -> CommandResult:
    """Run argv without a shell; a missing binary or timeout becomes a failed result, not an exception."""
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        return CommandResult(127, "", f"{argv[0]}: {exc.strerror}")
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"timed out after {timeout}s")
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


def group_name(prefix: str, value: str) -> str:
    return f"{prefix}_{_UNSAFE_GROUP_CHARS.sub('_', value)}"


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no error output")


def parse_podman_host(item: Any) -> PodmanHost:
    if item == "localhost":
        return PodmanHost("localhost")
    if not isinstance(item, Mapping) or not item.get("name"):
        raise AnsibleParserError(f"podman_hosts item must be 'localhost' or a dict with 'name', got: {item!r}")
    unknown = set(item) - {"name", "ssh_host", "ssh_user"}
    if unknown:
        raise AnsibleParserError(f"podman_hosts item {item['name']!r} has unknown keys: {', '.join(sorted(unknown))}")
    name = str(item["name"])
    if name == "localhost" and not item.get("ssh_host"):
        return PodmanHost("localhost")
    ssh_user = item.get("ssh_user")
    return PodmanHost(name, str(item.get("ssh_host") or name), str(ssh_user) if ssh_user else None)


def build_command(
    host: PodmanHost, podman: str, containers_conf: str | None
) -> tuple[list[str], dict[str, str] | None]:
    """Return argv and env for listing trove containers on host; remote hosts go through ssh."""
    podman_argv = [podman, "ps", "--all", "--filter", f"label={LABEL_PREFIX}cluster", "--format", "json"]
    if host.is_local:
        env = {**os.environ, "CONTAINERS_CONF": containers_conf} if containers_conf else None
        return podman_argv, env
    # ssh hands the command to the remote shell as one string, so quote it and pass env inline.
    remote_argv = ["env", f"CONTAINERS_CONF={containers_conf}", *podman_argv] if containers_conf else podman_argv
    target = f"{host.ssh_user}@{host.ssh_host}" if host.ssh_user else str(host.ssh_host)
    return ["ssh", *SSH_OPTIONS, "--", target, shlex.join(remote_argv)], None


def parse_ps_output(stdout: str, host_name: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(stdout) if stdout.strip() else []
    except json.JSONDecodeError as exc:
        raise AnsibleParserError(f"podman host '{host_name}': invalid JSON from podman ps: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, list):
        raise AnsibleParserError(
            f"podman host '{host_name}': expected a JSON list from podman ps, got {type(data).__name__}"
        )
    return data


def container_name(container: Mapping[str, Any]) -> str:
    names = container.get("Names") or []
    if isinstance(names, str):
        return names
    return names[0] if names else str(container.get("Id", "<unknown>"))[:12]


def to_member(container: Mapping[str, Any], host_name: str) -> Member | None:
    """Map one podman ps entry to a Member, or None (with a warning) when required labels are missing."""
    labels = {k.removeprefix(LABEL_PREFIX): v for k, v in (container.get("Labels") or {}).items()}
    missing = [f"{LABEL_PREFIX}{key}" for key in REQUIRED_LABELS if not labels.get(key)]
    if missing:
        display.warning(
            f"trove.dbaas.clusters: skipping container '{container_name(container)}' on podman host "
            f"'{host_name}': missing label(s) {', '.join(missing)}"
        )
        return None
    return Member(
        cluster=labels["cluster"],
        member=labels["member"],
        engine=labels["engine"],
        address=labels["address"],
        backend=labels.get("backend"),
        api_version=labels.get("api-version"),
        network=labels.get("network"),
        state=str(container["State"]) if container.get("State") is not None else None,
        container_id=container.get("Id"),
        podman_host=host_name,
        role=labels.get("role") or "database",
    )


def nova_member(record: Mapping[str, Any], cloud: str) -> Member:
    """A member record of _members.nova_members as a Member of this inventory."""
    return Member(
        cluster=record["cluster"],
        member=record["name"],
        engine=record["engine"],
        address=record["address"],
        backend=record["backend"],
        api_version=record["api_version"],
        network=record["network"],
        state=record["state"],
        container_id=record["id"],
        podman_host="",
        role=record["role"],
        ssh_address=record["ssh_address"],
        cloud=cloud,
    )


def default_key_file() -> str | None:
    """The controller key the cluster playbooks create, when it exists."""
    home = os.environ.get("TROVE_HOME") or os.path.expanduser("~/.local/share/trove-dbaas")
    path = os.path.join(home, "ssh", "id_ed25519")
    return path if os.path.exists(path) else None


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "trove.dbaas.clusters"

    # Replaceable so tests can fake podman without touching the machine.
    runner: Runner = staticmethod(run_command)

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(CONFIG_SUFFIXES)

    def _read_config_data(self, path: str) -> dict[str, Any]:
        # The base class only accepts the name the plugin was loaded under; also allow the short name.
        self._redirected_names = list(dict.fromkeys([*(self._redirected_names or [self.NAME]), "clusters"]))
        return super()._read_config_data(path)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        wanted = set(self.get_option("clusters") or [])
        members = [m for m in self._discover() if not wanted or m.cluster in wanted]
        for member in self._dedupe(sorted(members, key=lambda m: (m.cluster, m.member, m.podman_host))):
            self._add_member(member)

    def _discover(self) -> list[Member]:
        members: list[Member] = []
        for item in self.get_option("podman_hosts") or []:
            host = parse_podman_host(item)
            for container in self._list_containers(host):
                member = to_member(container, host.name)
                if member is not None:
                    members.append(member)
        for cloud in self.get_option("openstack_clouds") or []:
            members += [nova_member(record, cloud) for record in _members.nova_members(self._list_servers(cloud), "")]
        return members

    @staticmethod
    def _list_servers(cloud: str) -> list[dict[str, Any]]:
        if openstack is None:
            raise AnsibleParserError("openstack_clouds needs openstacksdk on the controller")
        try:
            with openstack.connect(cloud=cloud) as conn:
                return [server.to_dict() for server in conn.compute.servers(details=True)]
        except openstack.exceptions.SDKException as exc:
            raise AnsibleParserError(f"cloud '{cloud}': {exc}") from exc

    def _list_containers(self, host: PodmanHost) -> list[dict[str, Any]]:
        containers_conf = self.get_option("containers_conf")
        if host.is_local and containers_conf and not os.path.exists(containers_conf):
            return []  # the first cluster or image made here writes it: until then there is nothing to list
        argv, env = build_command(host, self.get_option("podman_executable"), containers_conf)
        result = self.runner(argv, env, self.get_option("command_timeout"))
        if result.rc != 0:
            raise AnsibleParserError(
                f"podman host '{host.name}' failed (rc={result.rc}): {first_line(result.stderr)} "
                f"[command: {shlex.join(argv)}]"
            )
        return parse_ps_output(result.stdout, host.name)

    @staticmethod
    def _dedupe(members: list[Member]) -> list[Member]:
        """Keep the first member per name; a name on two podman hosts means a broken deployment."""
        seen: dict[str, Member] = {}
        for member in members:
            first = seen.setdefault(member.member, member)
            if first is not member:
                display.warning(
                    f"trove.dbaas.clusters: member '{member.member}' found on {first.where} "
                    f"and {member.where}; using {first.where}"
                )
        return list(seen.values())

    def _host_vars(self, member: Member) -> dict[str, Any]:
        hostvars: dict[str, Any] = {
            "ansible_host": member.ssh_address or member.address,
            "ansible_user": self.get_option("ansible_user"),
            "trove_cluster": member.cluster,
            "trove_member": member.member,
            "trove_engine": member.engine,
            "trove_backend": member.backend,
            "trove_api_version": member.api_version,
            "trove_address": member.address,
            "trove_network": member.network,
            "trove_state": member.state,
            "trove_podman_host": member.podman_host or None,
            "trove_container_id": member.container_id,
            "trove_role": member.role,
        }
        if member.cloud:
            hostvars["trove_cloud"] = member.cloud
        key_file = self.get_option("ssh_private_key_file") or default_key_file()
        if key_file:
            hostvars["ansible_ssh_private_key_file"] = key_file
        return hostvars

    def _add_member(self, member: Member) -> None:
        host = member.member
        self.inventory.add_host(host, group=self.inventory.add_group("trove"))
        hostvars = self._host_vars(member)
        for key, value in hostvars.items():
            self.inventory.set_variable(host, key, value)

        cluster_group = self.inventory.add_group(group_name("trove_cluster", member.cluster))
        self.inventory.set_variable(cluster_group, "trove_cluster_name", member.cluster)
        self.inventory.add_host(host, group=cluster_group)
        self.inventory.add_host(host, group=self.inventory.add_group(group_name("trove_engine", member.engine)))
        self.inventory.add_host(host, group=self.inventory.add_group(group_name("trove_role", member.role)))
        if member.backend:
            self.inventory.add_host(host, group=self.inventory.add_group(group_name("trove_backend", member.backend)))
        self._apply_constructed(host, hostvars)

    def _apply_constructed(self, host: str, hostvars: dict[str, Any]) -> None:
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
