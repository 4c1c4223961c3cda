"""A newcomer's path, as docs/getting-started.md tells it: from the Galaxy tarball to a cluster that answers.

The test reads the section "From the Galaxy tarball" and does what it says in an empty directory:
a virtualenv with the doc's pip install line, the doc's ansible.cfg, inventory and cluster document,
then its commands in order (the collection installed from the tarball, the images checked, the cluster
applied, shown, found in the inventory, queried with psql, deleted). Only the installed copy of the
collection is visible: no ANSIBLE_* variable of the project, no project ansible.cfg.

Substitutions: the cluster name (so that it does not meet a newcomer's own), TROVE_HOME for the default
controller directory, the connection string that cluster_apply printed for the doc's example one, and
image_build runs with --check (the images exist; a newcomer's first run builds them).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, Run, assert_ok, make_cluster

pytestmark = pytest.mark.postgresql

DOC = ROOT / "docs" / "getting-started.md"
SECTION = "## From the Galaxy tarball"
NAME = "e2e-gx"
DEFAULT_HOME = "~/.local/share/trove-dbaas"
COLLECTION = ROOT / "collections" / "ansible_collections" / "trove" / "dbaas"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# What the test does not run as written: the apt packages (the machine has them), the virtualenv and the
# directory (made by the test at its own paths).
SKIPPED = ("apt-get ", "python3 -m venv ", "mkdir ")


@dataclass
class Guide:
    """The section's files and commands, with the doc's cluster name replaced by ours."""

    config: str
    inventory: tuple[str, str]
    document: tuple[str, str]
    commands: list[str]


def read_guide() -> Guide:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    blocks = [(lang, body) for lang, body in FENCE.findall(section)]
    config = next(body for lang, body in blocks if lang == "ini")
    commands = [
        line
        for lang, body in blocks
        if lang == "sh"
        for line in body.replace("\\\n", " ").splitlines()
        if line.strip() and not line.startswith(SKIPPED)
    ]
    apply = next(c for c in commands if c.startswith("ansible-playbook trove.dbaas.cluster_apply"))
    document_file = re.search(r"-e @(\S+)", apply)[1]
    inventory_file = re.search(r"^inventory = \./(\S+)$", config, re.MULTILINE)[1]
    inventory = next(body for lang, body in blocks if lang == "yaml" and "plugin: trove.dbaas.clusters" in body)
    document = next(body for lang, body in blocks if lang == "yaml" and "kind: Cluster" in body)
    doc_name = yaml.safe_load(document)["metadata"]["name"]
    return Guide(
        config=config,
        inventory=(inventory_file, inventory),
        document=(document_file.replace(doc_name, NAME), document.replace(doc_name, NAME)),
        commands=[c.replace(doc_name, NAME) for c in commands],
    )


class Newcomer:
    """An empty directory, a virtualenv of its own and a private TROVE_HOME; commands run with bash."""

    def __init__(self, work: Path, log_dir: Path) -> None:
        self.work = work / "dbaas"
        self.work.mkdir()
        self.venv = work / "venv"
        self.home = work / "home"
        self.log_dir = log_dir
        self.runs = 0
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "VIRTUAL_ENV", "PYTHON"))}
        env.pop("CONTAINERS_CONF", None)
        env["PATH"] = os.pathsep.join(
            [str(self.venv / "bin"), *(p for p in env["PATH"].split(os.pathsep) if p != str(BIN))]
        )
        env["TROVE_HOME"] = str(self.home)
        self.env = env

    def run(self, command: str, timeout: float = 900) -> Run:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.runs += 1
        run = Run(proc.returncode, proc.stdout + proc.stderr)
        (self.log_dir / f"gx-{self.runs:02d}.log").write_text(f"$ {command}\n{run.output}")
        return run


def adapted(line: str, outputs: dict[str, Run], home: Path) -> str:
    """The doc's command as the test runs it (see the module's docstring)."""
    if line.startswith("ansible-playbook trove.dbaas.image_build"):
        return f"{line} --check"  # the images exist; nothing may be built
    if line.startswith("PGPASSWORD="):
        printed = (word.strip("'\"-") for word in outputs["cluster_apply"].output.split())
        dsn = next(word for word in printed if word.startswith("postgresql://"))
        return re.sub(r"'postgresql://[^']*'", shlex.quote(dsn), line).replace(DEFAULT_HOME, str(home))
    return line


def command(guide: Guide, prefix: str) -> str:
    return next(c for c in guide.commands if c.startswith(prefix))


@pytest.fixture(scope="module")
def guide() -> Guide:
    return read_guide()


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory, guide: Guide):
    # The project's own playbooks clean up what an interrupted earlier run left, before and after.
    cleaner = make_cluster(tmp_path_factory, "postgresql-standalone.yml", NAME)
    cleaner.purge()
    person = Newcomer(tmp_path_factory.mktemp("newcomer"), cleaner.log_dir)
    cleaner.home = person.home
    cleaner.env["TROVE_HOME"] = str(person.home)
    yield person
    cleaner.purge()
    shutil.rmtree(person.venv)  # half a GiB of Ansible


def test_the_doc_names_this_version(guide: Guide) -> None:
    version = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"]
    install = command(guide, "ansible-galaxy collection install ")
    assert install.split()[-1] == f"trove-dbaas-{version}.tar.gz"


def test_newcomer_path(newcomer: Newcomer, guide: Guide) -> None:
    pip = command(guide, "pip install ")
    assert_ok(newcomer.run(pip, timeout=600))

    tarball = command(guide, "ansible-galaxy collection install ").split()[-1]
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path", str(newcomer.work)],
        check=True,
        capture_output=True,
    )
    assert (newcomer.work / tarball).is_file()
    (newcomer.work / "ansible.cfg").write_text(guide.config)
    (newcomer.work / guide.inventory[0]).write_text(guide.inventory[1])
    (newcomer.work / guide.document[0]).write_text(guide.document[1])

    outputs: dict[str, Run] = {}
    for line in guide.commands:
        if line.startswith("pip install "):
            continue
        run = newcomer.run(adapted(line, outputs, newcomer.home))
        assert_ok(run)
        playbook = re.search(r"trove\.dbaas\.(\w+)", line)
        outputs["psql" if " psql " in line else playbook[1] if playbook else line.split()[0]] = run
        if line.startswith("ansible-galaxy collection install "):
            # Only the installed copy: the project's collection is nowhere on the collections path.
            listing = newcomer.run("ansible-galaxy collection list trove.dbaas")
            assert_ok(listing)
            assert f"{newcomer.work}/collections/ansible_collections" in listing.output, listing.output
            assert str(ROOT / "collections") not in listing.output, listing.output

    member = f"{NAME}-0"
    assert {h: c["changed"] for h, c in outputs["image_build"].recap().items() if c["changed"]} == {}
    assert outputs["cluster_apply"].recap()[member]["changed"] > 0
    assert re.search(rf"^\s*-?\s*'?{member}\s+primary\s+running\b", outputs["cluster_status"].output, re.MULTILINE), (
        outputs["cluster_status"].output[-3000:]
    )
    graph = outputs["ansible-inventory"].output
    assert re.search(rf"@trove_cluster_{NAME.replace('-', '_')}:\n[ |]*--{member}\n", graph), graph
    answer = outputs["psql"].output
    assert re.search(r"^\s*app\s*\|\s*PostgreSQL 15\.", answer, re.MULTILINE), answer
    assert outputs["cluster_delete"].recap()
    gone = newcomer.run("ansible-inventory --list")
    assert_ok(gone)
    assert member not in gone.output
