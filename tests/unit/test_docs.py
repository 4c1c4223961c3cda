"""The generated cluster document reference is up to date, and every example document is valid."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "tools" / "gen_spec_reference.py"
SCHEMA_PATH = ROOT / "collections" / "ansible_collections" / "trove" / "dbaas" / "schemas" / "cluster-v1.json"
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))

if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.trove.dbaas.plugins.module_utils import _spec  # noqa: E402


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_spec_reference", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spec_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{result.stderr.strip()}\n{result.stdout.strip()}"


def test_check_reports_a_missing_or_stale_file(
    generator: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "cluster-spec.md"
    assert generator.main(["--check"], output=output) == 1
    assert "is missing" in capsys.readouterr().err
    assert generator.main([], output=output) == 0
    assert generator.main(["--check"], output=output) == 0
    output.write_text(output.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert generator.main(["--check"], output=output) == 1
    assert "is out of date" in capsys.readouterr().err


def test_reference_covers_every_field(generator: ModuleType) -> None:
    schema = _spec.load_schema(str(SCHEMA_PATH))
    text = generator.render()
    for _, _, fields in generator.objects(schema, "", schema):
        for path, field, _ in fields:
            assert f"| `{path}` |" in text
            assert field.get("description"), f"{path}: no description in the schema"


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_is_valid(path: Path) -> None:
    document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    cluster, errors = _spec.validate_cluster(document, _spec.load_schema(str(SCHEMA_PATH)))
    assert errors == []
    assert cluster is not None


# Operator guides: one per playbook in playbooks/, in docs/operations/<playbook>.md.
DOCS = ROOT / "docs"
GUIDES = DOCS / "operations"
PLAYBOOKS = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yml"))
COLLECTION = ROOT / "collections" / "ansible_collections" / "trove" / "dbaas"
# `-e name=value` in a command, and the first cell of a row in a guide's "Extra vars" table.
_EXTRA_VAR_ARG = re.compile(r"-e\s+['\"]?([A-Za-z_][A-Za-z0-9_]*)=")
_TABLE_NAMES = re.compile(r"^\|\s*((?:`[A-Za-z_][A-Za-z0-9_]*`(?:,\s*)?)+)\s*\|", re.MULTILINE)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _collection_playbook_text(name: str, seen: set[str] | None = None) -> str:
    """The collection's playbook and the playbooks it imports, as text."""
    seen = set() if seen is None else seen
    seen.add(name)
    text = (COLLECTION / "playbooks" / f"{name}.yml").read_text(encoding="utf-8")
    for imported in re.findall(r"import_playbook:\s*([A-Za-z0-9_]+)\.yml", text):
        if imported not in seen:
            text += _collection_playbook_text(imported, seen)
    return text


def _known_names(playbook: str) -> set[str]:
    """Every word in the playbook, the playbooks it imports, their shared tasks and the roles."""
    texts = [_collection_playbook_text(playbook)]
    texts += [p.read_text(encoding="utf-8") for p in (COLLECTION / "playbooks" / "tasks").glob("*.yml")]
    texts += [p.read_text(encoding="utf-8") for p in (COLLECTION / "roles").glob("*/*/*.yml")]
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(texts)))


def _guide_extra_vars(text: str) -> set[str]:
    names = set(_EXTRA_VAR_ARG.findall(text))
    section = text.split("## Extra vars", 1)[1].split("\n## ", 1)[0] if "## Extra vars" in text else ""
    for cell in _TABLE_NAMES.findall(section):
        names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cell))
    return names


def test_there_are_playbooks() -> None:
    assert PLAYBOOKS


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_playbook_has_a_guide(playbook: str) -> None:
    guide = GUIDES / f"{playbook}.md"
    assert guide.is_file(), f"playbooks/{playbook}.yml has no guide {guide.relative_to(ROOT)}"
    text = guide.read_text(encoding="utf-8")
    for heading in ("## What it does", "## Extra vars", "## What it refuses", "## After an interruption"):
        assert heading in text, f"{guide.name}: no section {heading!r}"
    assert f"playbooks/{playbook}.yml" in text, f"{guide.name}: no example command"
    index = (DOCS / "operations.md").read_text(encoding="utf-8")
    assert f"(operations/{playbook}.md)" in index, f"docs/operations.md does not link {guide.name}"


def test_every_guide_is_for_a_playbook() -> None:
    orphans = sorted(p.name for p in GUIDES.glob("*.md") if p.stem not in PLAYBOOKS)
    assert not orphans, f"guides without a playbook: {orphans}"


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_guide_names_only_real_extra_vars(playbook: str) -> None:
    guide = GUIDES / f"{playbook}.md"
    if not guide.is_file():
        pytest.skip("no guide (reported by test_every_playbook_has_a_guide)")
    names = _guide_extra_vars(guide.read_text(encoding="utf-8"))
    assert names, f"{guide.name}: names no extra var"
    unknown = sorted(names - _known_names(playbook))
    assert not unknown, f"{guide.name}: extra vars not in the playbook or its roles: {unknown}"


def test_extra_var_parsing() -> None:
    text = "run -e target=x -e \"target_time='t'\" -e @f.yml\n## Extra vars\n\n| `force` | x |\n| `a`, `b` | y |\n"
    assert _guide_extra_vars(text) == {"target", "target_time", "force", "a", "b"}


MARKDOWN = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_CODE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"
