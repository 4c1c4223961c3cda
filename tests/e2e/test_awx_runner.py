"""Job templates run the way AWX runs them: ansible-runner on a private data dir.

AWX hands each job to ansible-runner as a directory: the project checkout in project/, the synced
inventory in inventory/hosts (an executable that prints the inventory as JSON), the job template's
extra vars with the survey answers and launch-time variables in env/extravars, the credentials'
environment in env/envvars (files they inject next to it), and the job's limits in env/settings.
The tests build that directory from awx/vars/job_templates.json and awx/configure.yml (the
credential type's injectors) and run cluster_apply, cluster_status and cluster_delete of a one-member
Redis cluster through it; the results are read from the runner's artifacts (status, rc, job events).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, ROOT, Cluster, make_cluster, plain
from jinja2 import Environment, StrictUndefined
from test_redis import PODMAN_ENV, PORT, address, connect

pytestmark = pytest.mark.redis

NAME = "e2e-awx"
MEMBER = f"{NAME}-0"
EXAMPLE = "redis-standalone.yml"
TEMPLATES = {
    t["playbook"]: t
    for t in json.loads((ROOT / "awx" / "vars" / "job_templates.json").read_text(encoding="utf-8"))[
        "trove_awx_job_templates"
    ]
}
VAULT_PASSWORD = "not-a-secret-of-any-real-controller"


class _AwxConfigLoader(yaml.SafeLoader):
    """awx/configure.yml marks the injectors' templates !unsafe (AWX renders them, not Ansible)."""


_AwxConfigLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def credential_injectors() -> dict[str, Any]:
    """The injectors of the credential type that awx/configure.yml creates."""
    plays = yaml.load((ROOT / "awx" / "configure.yml").read_text(encoding="utf-8"), Loader=_AwxConfigLoader)
    tasks = [task for play in plays for task in play["tasks"]]
    return next(task["awx.awx.credential_type"]["injectors"] for task in tasks if "awx.awx.credential_type" in task)


def survey_answers(template: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """What AWX adds to the extra vars for a survey: the answers, checked against the questions, and the
    defaults of the questions nobody answered (an empty default is not passed)."""
    answers = {}
    for question in template["survey_spec"]["spec"]:
        variable = question["variable"]
        if variable not in given:
            assert not question["required"], f"{template['name']}: the survey requires {variable}"
            if question["default"] not in ("", None):
                answers[variable] = question["default"]
            continue
        value = answers[variable] = given[variable]
        if question["type"] == "multiplechoice":
            assert value in question["choices"], f"{variable}: {value!r} is not one of {question['choices']}"
        elif question["type"] == "integer":
            assert isinstance(value, int) and question["min"] <= value <= question["max"], (variable, value)
        elif "max" in question:
            assert question["min"] <= len(value) <= question["max"], (variable, value)
    assert set(given) <= set(answers), f"no survey question for {sorted(set(given) - set(answers))}"
    return answers


@dataclass
class Job:
    status: str
    rc: int
    events: list[dict[str, Any]]
    stdout: str

    def results(self, task: str) -> list[dict[str, Any]]:
        """The results of a task, from its runner_on_ok and runner_on_failed events."""
        return [
            e["event_data"]["res"]
            for e in self.events
            if e["event"] in ("runner_on_ok", "runner_on_failed") and e["event_data"].get("task") == task
        ]

    def stats(self) -> dict[str, dict[str, int]]:
        """The playbook_on_stats counters, as {counter: {host: count}}."""
        return next(e["event_data"] for e in self.events if e["event"] == "playbook_on_stats")


class Awx:
    """One private data dir per job, as AWX builds them, run with the ansible-runner CLI."""

    def __init__(self, cluster: Cluster, root: Path) -> None:
        self.cluster = cluster
        self.root = root
        self.project = root / "project"
        self.jobs = 0
        # The job's process sees neither TROVE_HOME nor ANSIBLE_CONFIG: the credential injects the
        # first, the project's own ansible.cfg (the working directory) stands for the second.
        self.env = {k: v for k, v in cluster.env.items() if k not in ("TROVE_HOME", "ANSIBLE_CONFIG")}
        self.checkout()

    def checkout(self) -> None:
        """The project as a checkout of this repository: its files, without what git ignores."""
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, (f.decode() for f in files)):
            source = ROOT / name
            if source.is_file():
                (self.project / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, self.project / name)

    def credential(self, env_dir: Path) -> dict[str, str]:
        """The environment the trove.dbaas controller credential injects, and the files it writes."""
        injectors = credential_injectors()
        inputs = {"trove_home": str(self.cluster.home), "vault_password": VAULT_PASSWORD}
        files = {}
        for key, template in injectors.get("file", {}).items():
            path = env_dir / key.removeprefix("template.")
            path.write_text(Environment(undefined=StrictUndefined).from_string(template).render(inputs))
            path.chmod(0o600)
            files[key.removeprefix("template.")] = str(path)
        context = {**inputs, "tower": {"filename": files}}
        return {
            name: Environment(undefined=StrictUndefined).from_string(template).render(context)
            for name, template in injectors["env"].items()
        }

    def sync_inventory(self, envvars: dict[str, str]) -> dict[str, Any]:
        """The inventory source's update: ansible-inventory on the project's trove.dbaas.clusters source."""
        proc = subprocess.run(
            [str(BIN / "ansible-inventory"), "-i", "inventories/local/trove.clusters.yml", "--list"],
            cwd=self.project,
            env={**self.env, **envvars},
            capture_output=True,
            text=True,
            check=True,
        )
        return plain(json.loads(proc.stdout))

    def launch(self, playbook: str, answers: dict[str, Any], launch_vars: dict[str, Any] | None = None) -> Job:
        """Launch the job template of `playbook` with survey answers and launch-time extra vars."""
        template = TEMPLATES[f"playbooks/{playbook}.yml"]
        self.jobs += 1
        private = self.root / f"job-{self.jobs}"
        (private / "env").mkdir(parents=True)
        (private / "inventory").mkdir()
        private.joinpath("project").symlink_to(self.project)
        envvars = {**self.credential(private / "env"), "JOB_ID": str(self.jobs), "AWX_HOST": "https://awx.invalid"}
        hosts = private / "inventory" / "hosts"
        hosts.write_text(f"#!/usr/bin/env python3\nprint({json.dumps(self.sync_inventory(envvars))!r})\n")
        hosts.chmod(0o700)
        extravars = {**template["extra_vars"], **survey_answers(template, answers), **(launch_vars or {})}
        (private / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        (private / "env" / "envvars").write_text(yaml.safe_dump(envvars))
        settings = {"job_timeout": 900, "idle_timeout": 600, "pexpect_timeout": 5, "suppress_ansible_output": True}
        (private / "env" / "settings").write_text(yaml.safe_dump(settings))
        proc = subprocess.run(
            [str(BIN / "ansible-runner"), "run", str(private), "-p", template["playbook"], "--ident", playbook],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        artifacts = private / "artifacts" / playbook
        stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").is_file() else ""
        (self.cluster.log_dir / f"awx-{self.jobs:02d}-{playbook}.log").write_text(stdout + proc.stdout + proc.stderr)
        assert (artifacts / "status").is_file(), proc.stdout + proc.stderr
        events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
        return Job(
            status=(artifacts / "status").read_text().strip(),
            rc=int((artifacts / "rc").read_text()),
            events=sorted(events, key=lambda e: e["counter"]),
            stdout=stdout,
        )


def assert_successful(job: Job) -> None:
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-4000:]
    assert not any(job.stats()[counter] for counter in ("failures", "dark")), job.stats()


def survey(**answers: Any) -> dict[str, Any]:
    """The cluster questions answered for this module's cluster, as the example document describes it."""
    spec = yaml.safe_load((ROOT / "examples" / EXAMPLE).read_text())["spec"]
    return {
        "survey_cluster_name": NAME,
        "survey_engine": spec["engine"],
        "survey_topology": spec["topology"],
        "survey_members": 1,
        **answers,
    }


@pytest.fixture(scope="module")
def awx(tmp_path_factory: pytest.TempPathFactory):
    cluster = make_cluster(tmp_path_factory, EXAMPLE, NAME)
    cluster.purge()  # what an interrupted earlier run left
    yield Awx(cluster, tmp_path_factory.mktemp("awx"))
    cluster.purge()


def test_a_refused_document_fails_the_job_with_its_message(awx: Awx) -> None:
    job = awx.launch("cluster_status", survey(survey_engine="postgresql", survey_topology="sharded"))
    assert (job.status, job.rc) == ("failed", 2)
    failed = [e for e in job.events if e["event"] == "runner_on_failed"]
    assert [e["event_data"]["task"] for e in failed] == ["Validate the cluster document"]
    assert "spec.topology" in failed[0]["event_data"]["res"]["msg"], failed[0]["event_data"]["res"]


def test_apply_with_the_example_document_at_launch(awx: Awx) -> None:
    """The survey's shape has no users or persistence: the whole document comes as launch-time variables."""
    document = yaml.safe_load(awx.cluster.spec_file.read_text())
    job = awx.launch("cluster_apply", survey(), launch_vars=document)
    assert_successful(job)
    assert MEMBER in job.stats()["changed"], job.stats()
    # The credential's TROVE_HOME holds the cluster's secrets, not the runner's own HOME.
    assert (awx.cluster.home / "secrets" / NAME / "credentials" / "app.yml").is_file()
    conn = connect(awx.cluster, address(awx.cluster, MEMBER), user="app")
    try:
        assert conn.call("SET", "awx:job", "applied") == "OK"
        assert conn.call("GET", "awx:job") == "applied"
    finally:
        conn.close()


def test_status_from_the_survey_names_the_member(awx: Awx) -> None:
    job = awx.launch("cluster_status", survey())
    assert_successful(job)
    (result,) = job.results("Show the members")
    lines = [line.split() for line in result["msg"]]
    assert lines[0][:3] == ["MEMBER", "ROLE", "STATE"], result["msg"]
    member = next(line for line in lines if line[0] == MEMBER)
    assert member[1:3] == ["primary", "running"], result["msg"]
    assert member[-1] == f"{address(awx.cluster, MEMBER)}:{PORT}", result["msg"]


def test_delete_with_confirm_and_purge(awx: Awx) -> None:
    job = awx.launch("cluster_delete", survey(confirm=NAME, purge="true"))
    assert_successful(job)
    assert awx.cluster.members() == {}
    volumes = subprocess.run(
        ["podman", "volume", "ls", "-q", "--filter", f"label=trove.dbaas/cluster={NAME}"],
        env=PODMAN_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    assert volumes.stdout.split() == []
