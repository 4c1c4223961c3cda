from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_files
short_description: Converge a set of directories and small files on a member in one step
description:
  - Makes sure each directory in O(directories) exists and each file in O(files) has exactly the given
    content, owner, group and mode; only what differs is written.
  - Does in one remote call what C(ansible.builtin.file), C(ansible.builtin.copy) and
    C(ansible.builtin.template) do in one call per path, which is most of the time of a no-change run.
  - Files are replaced atomically (a temporary file in the same directory, then a rename), so a reader
    never sees a half-written file.
  - Render templates on the controller with C(lookup('ansible.builtin.template', ...)) and pass the result
    as O(files[].content).
version_added: 0.2.0
options:
  directories:
    description:
      - Directories to create when missing, parents first. Existing ones get the given owner, group and mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      owner:
        description: Owning user name.
        type: str
        default: root
      group:
        description: Owning group name.
        type: str
        default: root
      mode:
        description: Permissions as an octal string such as C("0750").
        type: str
        default: "0755"
  files:
    description:
      - Files to write. Their directories must exist or be listed in O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description:
          - The whole content of the file.
          - Exactly one of O(files[].content) and O(files[].secret_content) is required.
        type: str
      secret_content:
        description:
          - The whole content of a file that holds a secret. It is masked in the module's output and left out
            of the diff.
        type: str
      owner:
        description: Owning user name.
        type: str
        default: root
      group:
        description: Owning group name.
        type: str
        default: root
      mode:
        description: Permissions as an octal string such as C("0640").
        type: str
        default: "0644"
extends_documentation_fragment:
  - action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows content changes of files given by O(files[].content).
  platform:
    support: full
    platforms: posix
author:
  - trove.dbaas maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Write the server configuration
  trove.dbaas.config_files:
    directories:
      - {path: /etc/postgresql/15/main, owner: postgres, group: postgres, mode: "0700"}
    files:
      - path: /etc/postgresql/15/main/postgresql.conf
        content: "{{ lookup('ansible.builtin.template', 'postgresql.conf.j2') }}"
        owner: postgres
        group: postgres
        mode: "0640"
  notify: Reload PostgreSQL
"""

RETURN = r"""
changed_paths:
  description: Directories and files that were created or changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/postgresql/15/main/postgresql.conf]
"""

import grp
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule

_OWNERSHIP = {
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
}


class _Module(AnsibleModule):
    """Keeps file contents out of the host's journal. Results mask secret_content, but the
    invocation log renders nested options with escaped newlines, which the masking cannot match."""

    def _log_invocation(self) -> None:
        pass


def _ids(module: AnsibleModule, item: dict) -> tuple[int, int, int]:
    try:
        uid = pwd.getpwnam(item["owner"]).pw_uid
        gid = grp.getgrnam(item["group"]).gr_gid
    except KeyError as exc:
        module.fail_json(msg=f"{item['path']}: unknown user or group {exc.args[0]}")
    try:
        mode = int(item["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"{item['path']}: mode must be an octal string such as '0640', got {item['mode']!r}")
    return uid, gid, mode


def _attributes_differ(path: str, uid: int, gid: int, mode: int) -> bool:
    st = os.stat(path)
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, mode)


def _directory(module: AnsibleModule, item: dict) -> bool:
    path = item["path"]
    uid, gid, mode = _ids(module, item)
    if os.path.isdir(path) and not _attributes_differ(path, uid, gid, mode):
        return False
    if module.check_mode:
        return True
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return True


def _file(module: AnsibleModule, item: dict, diffs: list) -> bool:
    path = item["path"]
    uid, gid, mode = _ids(module, item)
    secret = item["secret_content"] is not None
    text = item["secret_content"] if secret else item["content"]
    wanted = text.encode("utf-8")
    try:
        with open(path, "rb") as current:
            before = current.read()
    except FileNotFoundError:
        before = None
    if before == wanted:
        if not _attributes_differ(path, uid, gid, mode):
            return False
        if not module.check_mode:
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        return True
    if module._diff and not secret:
        diffs.append(
            {
                "before_header": path,
                "after_header": path,
                "before": "" if before is None else before.decode("utf-8", "replace"),
                "after": text,
            }
        )
    if module.check_mode:
        return True
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(wanted)
            out.flush()
            os.fsync(out.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main() -> None:
    module = _Module(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    **_OWNERSHIP,
                    "mode": {"type": "str", "default": "0755"},
                },
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str"},
                    "secret_content": {"type": "str", "no_log": True},
                    **_OWNERSHIP,
                    "mode": {"type": "str", "default": "0644"},
                },
                "required_one_of": [["content", "secret_content"]],
                "mutually_exclusive": [["content", "secret_content"]],
            },
        },
        supports_check_mode=True,
    )
    changed, diffs = [], []
    for item in module.params["directories"]:
        try:
            if _directory(module, item):
                changed.append(item["path"])
        except OSError as exc:
            module.fail_json(msg=f"{item['path']}: {exc.strerror}", changed_paths=changed)
    for item in module.params["files"]:
        try:
            if _file(module, item, diffs):
                changed.append(item["path"])
        except OSError as exc:
            module.fail_json(msg=f"{item['path']}: {exc.strerror}", changed_paths=changed)
    module.exit_json(changed=bool(changed), changed_paths=changed, diff=diffs)


if __name__ == "__main__":
    main()
