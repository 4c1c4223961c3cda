from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.trove.dbaas.plugins.inventory import clusters
from ansible_collections.trove.dbaas.plugins.inventory.clusters import CommandResult

FIXTURES = Path(__file__).parent / "fixtures"
PLUGIN_NAME = "trove.dbaas.clusters"
PS_ARGS = ["ps", "--all", "--filter", "label=trove.dbaas/cluster", "--format", "json"]


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def ok(name: str) -> CommandResult:
    return CommandResult(0, fixture_text(name), "")


class FakeRunner:
    """Answers per podman host: 'localhost' for local calls, the ssh target for remote ones."""

    def __init__(self, outputs: dict[str, CommandResult]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[list[str], dict[str, str] | None, int]] = []

    def __call__(self, argv: list[str], env: dict[str, str] | None, timeout: int) -> CommandResult:
        self.calls.append((argv, env, timeout))
        target = argv[argv.index("--") + 1] if argv[0] == "ssh" else "localhost"
        return self.outputs[target]


class FakeDisplay:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.warnings.append(msg)


@pytest.fixture(autouse=True)
def display(monkeypatch: pytest.MonkeyPatch) -> FakeDisplay:
    fake = FakeDisplay()
    monkeypatch.setattr(clusters, "display", fake)
    return fake


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TROVE_SSH_KEY", "TROVE_CONTAINERS_CONF", "TROVE_PODMAN_EXECUTABLE"):
        monkeypatch.delenv(var, raising=False)


def make_plugin() -> clusters.InventoryModule:
    # Register the option definitions the way the plugin loader would, without a collection finder.
    inventory_loader._load_config_defs(PLUGIN_NAME, clusters, clusters.__file__)
    plugin = clusters.InventoryModule()
    plugin._load_name = PLUGIN_NAME
    return plugin


def run_inventory(tmp_path: Path, runner: FakeRunner, **config: Any) -> tuple[InventoryData, clusters.InventoryModule]:
    path = tmp_path / "trove.clusters.yml"
    path.write_text(json.dumps({"plugin": PLUGIN_NAME, **config}))
    plugin = make_plugin()
    plugin.runner = runner
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path))
    return inventory, plugin


def host_names(inventory: InventoryData, group: str) -> list[str]:
    return [host.name for host in inventory.groups[group].hosts]


def host_vars(inventory: InventoryData, host: str) -> dict[str, Any]:
    # add_host also records inventory_file/inventory_dir; only the plugin's own vars matter here.
    return {k: v for k, v in inventory.get_host(host).vars.items() if not k.startswith("inventory_")}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("trove.clusters.yml", True),
        ("trove.clusters.yaml", True),
        ("clusters.yml", True),
        ("prod-clusters.yaml", True),
        ("inventory.yml", False),
        ("trove.clusters.json", False),
    ],
)
def test_verify_file(tmp_path: Path, name: str, expected: bool) -> None:
    path = tmp_path / name
    path.write_text("plugin: trove.dbaas.clusters\n")
    assert make_plugin().verify_file(str(path)) is expected


def test_verify_file_missing(tmp_path: Path) -> None:
    assert make_plugin().verify_file(str(tmp_path / "trove.clusters.yml")) is False


def test_groups(tmp_path: Path) -> None:
    inventory, _ = run_inventory(tmp_path, FakeRunner({"localhost": ok("podman_ps_local.json")}))
    assert host_names(inventory, "trove") == ["invtest-pg-demo-0", "invtest-pg-demo-1", "invtest-redis-a-0"]
    assert host_names(inventory, "trove_cluster_invtest_pg") == ["invtest-pg-demo-0", "invtest-pg-demo-1"]
    assert host_names(inventory, "trove_cluster_invtest_redis_a") == ["invtest-redis-a-0"]
    assert host_names(inventory, "trove_engine_postgresql") == ["invtest-pg-demo-0", "invtest-pg-demo-1"]
    assert host_names(inventory, "trove_engine_redis") == ["invtest-redis-a-0"]
    assert host_names(inventory, "trove_backend_container") == host_names(inventory, "trove")
    assert host_names(inventory, "trove_role_database") == host_names(inventory, "trove")
    assert "trove_cluster_invtest_noaddr" not in inventory.groups


def test_cluster_group_var(tmp_path: Path) -> None:
    inventory, _ = run_inventory(tmp_path, FakeRunner({"localhost": ok("podman_ps_local.json")}))
    assert inventory.groups["trove_cluster_invtest_redis_a"].get_vars() == {"trove_cluster_name": "invtest-redis-a"}


def test_hostvars(tmp_path: Path) -> None:
    inventory, _ = run_inventory(tmp_path, FakeRunner({"localhost": ok("podman_ps_local.json")}))
    assert host_vars(inventory, "invtest-pg-demo-0") == {
        "ansible_host": "10.88.0.250",
        "ansible_user": "root",
        "trove_cluster": "invtest-pg",
        "trove_member": "invtest-pg-demo-0",
        "trove_engine": "postgresql",
        "trove_backend": "container",
        "trove_api_version": "trove.dbaas/v1",
        "trove_address": "10.88.0.250",
        "trove_network": "podman",
        "trove_state": "created",
        "trove_podman_host": "localhost",
        "trove_container_id": "ce4617375eb86ee8e3965b780bccc16d162b178a0d78fd74263718a8d34767e0",
        "trove_role": "database",
    }


def test_ssh_key_and_user_options(tmp_path: Path) -> None:
    inventory, _ = run_inventory(
        tmp_path,
        FakeRunner({"localhost": ok("podman_ps_local.json")}),
        ssh_private_key_file="/keys/trove",
        ansible_user="admin",
    )
    hostvars = host_vars(inventory, "invtest-redis-a-0")
    assert hostvars["ansible_ssh_private_key_file"] == "/keys/trove"
    assert hostvars["ansible_user"] == "admin"


def test_ssh_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROVE_SSH_KEY", "/env/key")
    inventory, _ = run_inventory(tmp_path, FakeRunner({"localhost": ok("podman_ps_local.json")}))
    assert host_vars(inventory, "invtest-pg-demo-1")["ansible_ssh_private_key_file"] == "/env/key"


def test_local_command_line(tmp_path: Path) -> None:
    runner = FakeRunner({"localhost": ok("podman_ps_empty.json")})
    run_inventory(tmp_path, runner)
    assert runner.calls == [(["podman", *PS_ARGS], None, 60)]


def test_local_containers_conf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "containers.conf"
    conf.write_text("[engine]\n")
    monkeypatch.setenv("TROVE_CONTAINERS_CONF", str(conf))
    runner = FakeRunner({"localhost": ok("podman_ps_empty.json")})
    run_inventory(tmp_path, runner, podman_executable="/usr/bin/podman")
    argv, env, _ = runner.calls[0]
    assert argv == ["/usr/bin/podman", *PS_ARGS]
    assert env is not None
    assert env["CONTAINERS_CONF"] == str(conf)
    assert "PATH" in env


def test_local_host_without_its_containers_conf_has_no_members(tmp_path: Path, display: FakeDisplay) -> None:
    """A new controller: podman (perhaps not installed yet) is not asked, and nothing is reported."""
    runner = FakeRunner({})
    inventory, _ = run_inventory(tmp_path, runner, containers_conf=str(tmp_path / "absent.conf"))
    assert runner.calls == []
    assert display.warnings == []
    assert [h for h in inventory.hosts if h != "localhost"] == []


def test_remote_command_line(tmp_path: Path) -> None:
    runner = FakeRunner({"admin@192.0.2.20": ok("podman_ps_remote.json"), "db3": ok("podman_ps_empty.json")})
    inventory, _ = run_inventory(
        tmp_path,
        runner,
        podman_hosts=[{"name": "db2", "ssh_host": "192.0.2.20", "ssh_user": "admin"}, {"name": "db3"}],
        containers_conf="/etc/trove/containers.conf",
    )
    remote = shlex.join(["env", "CONTAINERS_CONF=/etc/trove/containers.conf", "podman", *PS_ARGS])
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--"]
    assert [call[0] for call in runner.calls] == [[*ssh, "admin@192.0.2.20", remote], [*ssh, "db3", remote]]
    assert all(call[1] is None for call in runner.calls)
    assert host_vars(inventory, "invtest-maria-0")["trove_podman_host"] == "db2"


def test_sorted_by_cluster_then_member(tmp_path: Path) -> None:
    # The remote fixture lists invtest-maria-1 before invtest-maria-0, as podman does (newest first).
    runner = FakeRunner({"localhost": ok("podman_ps_local.json"), "remote": ok("podman_ps_remote.json")})
    inventory, _ = run_inventory(tmp_path, runner, podman_hosts=["localhost", {"name": "remote"}])
    assert host_names(inventory, "trove") == [
        "invtest-maria-0",
        "invtest-maria-1",
        "invtest-pg-demo-0",
        "invtest-pg-demo-1",
        "invtest-redis-a-0",
    ]
    assert host_names(inventory, "trove_engine_mariadb") == ["invtest-maria-0", "invtest-maria-1"]


def test_filter_clusters(tmp_path: Path) -> None:
    runner = FakeRunner({"localhost": ok("podman_ps_local.json")})
    inventory, _ = run_inventory(tmp_path, runner, clusters=["invtest-redis-a"])
    assert host_names(inventory, "trove") == ["invtest-redis-a-0"]
    assert "trove_cluster_invtest_pg" not in inventory.groups


def test_podman_failure(tmp_path: Path) -> None:
    stderr = 'time="x" level=error msg="finding config on system"\nsecond line\n'
    runner = FakeRunner({"localhost": CommandResult(1, "", stderr)})
    with pytest.raises(AnsibleParserError) as err:
        run_inventory(tmp_path, runner)
    assert "podman host 'localhost'" in str(err.value)
    assert 'msg="finding config on system"' in str(err.value)
    assert "second line" not in str(err.value)


def test_remote_ssh_failure_names_host(tmp_path: Path) -> None:
    runner = FakeRunner({"far": CommandResult(255, "", "ssh: Could not resolve hostname far\n")})
    with pytest.raises(AnsibleParserError, match=r"podman host 'far' failed \(rc=255\): ssh: Could not resolve"):
        run_inventory(tmp_path, runner, podman_hosts=[{"name": "far"}])


def test_missing_executable_is_failed_result() -> None:
    result = clusters.run_command(["/nonexistent/trove-podman", "ps"], None, 5)
    assert result.rc == 127
    assert "/nonexistent/trove-podman" in result.stderr


def test_invalid_json(tmp_path: Path) -> None:
    runner = FakeRunner({"localhost": CommandResult(0, "not json", "")})
    with pytest.raises(AnsibleParserError, match="invalid JSON"):
        run_inventory(tmp_path, runner)


def test_empty_output(tmp_path: Path) -> None:
    inventory, _ = run_inventory(tmp_path, FakeRunner({"localhost": CommandResult(0, "", "")}))
    assert "trove" not in inventory.groups


@pytest.mark.parametrize("item", ["db2", {"ssh_host": "x"}, {"name": "db2", "port": 22}])
def test_bad_podman_hosts_item(tmp_path: Path, item: Any) -> None:
    with pytest.raises(AnsibleParserError, match="podman_hosts item"):
        run_inventory(tmp_path, FakeRunner({}), podman_hosts=[item])


def test_skip_missing_address(tmp_path: Path, display: FakeDisplay) -> None:
    inventory, _ = run_inventory(tmp_path, FakeRunner({"localhost": ok("podman_ps_local.json")}))
    assert inventory.get_host("invtest-noaddr-0") is None
    assert len(display.warnings) == 1
    assert "'invtest-noaddr-0'" in display.warnings[0]
    assert "trove.dbaas/address" in display.warnings[0]


def test_duplicate_member_keeps_first_host(tmp_path: Path, display: FakeDisplay) -> None:
    runner = FakeRunner({"a": ok("podman_ps_remote.json"), "b": ok("podman_ps_remote.json")})
    inventory, _ = run_inventory(tmp_path, runner, podman_hosts=[{"name": "b"}, {"name": "a"}])
    assert host_vars(inventory, "invtest-maria-0")["trove_podman_host"] == "a"
    assert sum("found on podman host 'a' and podman host 'b'" in w for w in display.warnings) == 2


def test_constructed_options(tmp_path: Path) -> None:
    inventory, _ = run_inventory(
        tmp_path,
        FakeRunner({"localhost": ok("podman_ps_local.json")}),
        keyed_groups=[{"key": "trove_state", "prefix": "state"}, {"key": "trove_cluster", "prefix": "c"}],
        groups={"first_members": "trove_member.endswith('-0')"},
        compose={"trove_fqdn": "trove_member ~ '.db.internal'"},
    )
    assert host_names(inventory, "state_created") == host_names(inventory, "trove")
    assert host_names(inventory, "c_invtest_pg") == ["invtest-pg-demo-0", "invtest-pg-demo-1"]
    assert host_names(inventory, "first_members") == ["invtest-pg-demo-0", "invtest-redis-a-0"]
    assert host_vars(inventory, "invtest-pg-demo-1")["trove_fqdn"] == "invtest-pg-demo-1.db.internal"


def test_constructed_strict(tmp_path: Path) -> None:
    with pytest.raises(AnsibleError, match="trove_bad"):
        run_inventory(
            tmp_path,
            FakeRunner({"localhost": ok("podman_ps_local.json")}),
            compose={"trove_bad": "undefined_var.attr"},
            strict=True,
        )


def test_short_plugin_name(tmp_path: Path) -> None:
    path = tmp_path / "trove.clusters.yml"
    path.write_text("plugin: clusters\n")
    plugin = make_plugin()
    plugin.runner = FakeRunner({"localhost": ok("podman_ps_remote.json")})
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path))
    assert host_names(inventory, "trove") == ["invtest-maria-0", "invtest-maria-1"]


def test_wrong_plugin_name(tmp_path: Path) -> None:
    path = tmp_path / "trove.clusters.yml"
    path.write_text("plugin: constructed\n")
    with pytest.raises(AnsibleParserError, match="Incorrect plugin name"):
        make_plugin().parse(InventoryData(), DataLoader(), str(path))


def nova_server(name: str, cloud: str, tenant: str, management: str) -> dict[str, Any]:
    fixed = {"OS-EXT-IPS:type": "fixed", "version": 4}
    return {
        "id": f"{cloud}-{name}",
        "name": name,
        "status": "ACTIVE",
        "addresses": {"tenant": [{"addr": tenant, **fixed}], "mgmt": [{"addr": management, **fixed}]},
        "metadata": {
            "trove.dbaas.cluster": "multi",
            "trove.dbaas.member": name,
            "trove.dbaas.engine": "postgresql",
            "trove.dbaas.backend": "nova",
            "trove.dbaas.network": "tenant",
            "trove.dbaas.management-network": "mgmt",
        },
    }


def test_members_across_clouds_join_one_cluster_reached_on_the_management_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = {
        "east": [nova_server("multi-0", "east", "10.0.0.5", "192.168.0.5"), {"id": "x", "name": "web", "metadata": {}}],
        "west": [nova_server("multi-1", "west", "10.1.0.5", "192.168.1.5")],
    }
    monkeypatch.setattr(clusters.InventoryModule, "_list_servers", staticmethod(servers.__getitem__))
    inventory, _ = run_inventory(tmp_path, FakeRunner({}), podman_hosts=[], openstack_clouds=["east", "west"])
    assert host_names(inventory, "trove_cluster_multi") == ["multi-0", "multi-1"]
    assert host_names(inventory, "trove_backend_nova") == ["multi-0", "multi-1"]
    west = host_vars(inventory, "multi-1")
    assert (west["ansible_host"], west["trove_address"], west["trove_cloud"], west["trove_state"]) == (
        "192.168.1.5",
        "10.1.0.5",
        "west",
        "running",
    )
    assert west["trove_podman_host"] is None
