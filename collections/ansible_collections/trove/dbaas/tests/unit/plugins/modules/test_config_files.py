from __future__ import annotations

import grp
import json
import os
import pwd

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.trove.dbaas.plugins.modules import config_files

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run(capsys, check_mode=False, diff=False, **params):
    with (
        patch_module_args({**params, "_ansible_check_mode": check_mode, "_ansible_diff": diff}),
        pytest.raises(SystemExit),
    ):
        config_files.main()
    return json.loads(capsys.readouterr().out)


def entry(path, **extra):
    return {"path": str(path), "owner": OWNER, "group": GROUP, **extra}


def test_writes_what_is_missing_then_nothing(tmp_path, capsys):
    conf = tmp_path / "etc" / "conf"
    params = {
        "directories": [entry(conf, mode="0700")],
        "files": [entry(conf / "a.conf", content="a = 1\n", mode="0640")],
    }
    first = run(capsys, **params)
    assert first["changed"] and first["changed_paths"] == [str(conf), str(conf / "a.conf")]
    assert (conf / "a.conf").read_text() == "a = 1\n"
    assert oct((conf / "a.conf").stat().st_mode & 0o7777) == "0o640"
    assert oct(conf.stat().st_mode & 0o7777) == "0o700"
    second = run(capsys, **params)
    assert not second["changed"] and second["changed_paths"] == []


def test_fixes_mode_without_rewriting(tmp_path, capsys):
    path = tmp_path / "b.conf"
    path.write_text("same\n")
    path.chmod(0o666)
    inode = path.stat().st_ino
    result = run(capsys, files=[entry(path, content="same\n", mode="0600")])
    assert result["changed_paths"] == [str(path)]
    assert path.stat().st_ino == inode and oct(path.stat().st_mode & 0o7777) == "0o600"


def test_check_mode_reports_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "c.conf"
    path.write_text("old\n")
    result = run(capsys, check_mode=True, diff=True, files=[entry(path, content="new\n")])
    assert result["changed"] and path.read_text() == "old\n"
    assert result["diff"] == [
        {"before_header": str(path), "after_header": str(path), "before": "old\n", "after": "new\n"}
    ]


def test_sensitive_content_stays_out_of_the_diff(tmp_path, capsys):
    path = tmp_path / ".pgpass"
    result = run(capsys, diff=True, files=[entry(path, secret_content="secret-value\n", mode="0600")])
    assert result["changed"] and path.read_text() == "secret-value\n"
    assert result["diff"] == [] and "secret-value" not in json.dumps(result)


def test_contents_are_not_logged_on_the_host(tmp_path, capsys, monkeypatch):
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda module, msg, log_args=None: logged.append(msg))
    secret = "*:*:*:replicator:s3cret-value\n"
    args = {"files": [entry(tmp_path / ".pgpass", secret_content=secret)], "_ansible_no_log": False}
    with patch_module_args(args), pytest.raises(SystemExit):
        config_files.main()
    capsys.readouterr()
    assert "s3cret-value" not in repr(logged)


def test_bad_input_names_the_path(tmp_path, capsys):
    path = tmp_path / "d.conf"
    bad_mode = run(capsys, files=[entry(path, content="x", mode="rw-r--r--")])
    assert bad_mode["failed"] and bad_mode["msg"].startswith(f"{path}: mode must be an octal string")
    no_dir = run(capsys, files=[entry(tmp_path / "missing" / "e.conf", content="x")])
    assert no_dir["failed"] and no_dir["msg"] == f"{tmp_path / 'missing' / 'e.conf'}: No such file or directory"
    no_user = run(capsys, files=[{"path": str(path), "content": "x", "owner": "no-such-user-here"}])
    assert no_user["failed"] and "unknown user or group" in no_user["msg"]
    both = run(capsys, files=[entry(path, content="x", secret_content="s3cret-value")])
    assert both["failed"] and "mutually exclusive" in both["msg"]
    assert not path.exists()
