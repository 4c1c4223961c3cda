"""The generated cluster document reference is up to date, and every example document is valid."""

from __future__ import annotations

import importlib.util
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
