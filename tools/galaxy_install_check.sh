#!/usr/bin/env bash
# Installs the collection tarball into an empty collections path and checks the installed copy
# alone: ansible-doc lists every module, filter, inventory plugin and role, every playbook passes
# --syntax-check, and a playbook refuses a bad cluster document with a clear message.
# Usage: tools/galaxy_install_check.sh build/trove-dbaas-<version>.tar.gz
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SOURCE=$ROOT/collections/ansible_collections/trove/dbaas
TARBALL=$(realpath "$1")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fail() { echo "galaxy check: $*" >&2; exit 1; }

# Only the temporary path and the collections bundled with the `ansible` package are visible.
printf '[defaults]\n' >"$WORK/ansible.cfg"
export ANSIBLE_CONFIG=$WORK/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$WORK/collections
cd "$WORK"
ansible-galaxy collection install --offline "$TARBALL" >/dev/null
INSTALLED=$WORK/collections/ansible_collections/trove/dbaas
[ -f "$INSTALLED/MANIFEST.json" ] || fail "$TARBALL did not install into $ANSIBLE_COLLECTIONS_PATH"

expect_listed() { # <plugin type> <names...>
  local type=$1 listing name
  shift
  listing=$(ansible-doc -t "$type" -l trove.dbaas)
  for name in "$@"; do
    grep -q "^trove\.dbaas\.$name[: ]" <<<"$listing" || fail "ansible-doc -t $type does not list trove.dbaas.$name"
  done
}
expect_listed module $(basename -s .py "$SOURCE"/plugins/modules/*.py)
expect_listed filter $(basename -s .yml "$SOURCE"/plugins/filter/*.yml)
expect_listed inventory $(basename -s .py "$SOURCE"/plugins/inventory/*.py)
expect_listed role $(ls "$SOURCE/roles")

playbooks=$(basename -s .yml "$SOURCE"/playbooks/*.yml)
for playbook in $playbooks; do
  [ -f "$INSTALLED/playbooks/$playbook.yml" ] || fail "playbook $playbook is not in the tarball"
  ansible-playbook --syntax-check "trove.dbaas.$playbook" >/dev/null 2>"$WORK/stderr" \
    || { cat "$WORK/stderr" >&2; fail "trove.dbaas.$playbook fails --syntax-check"; }
done

if output=$(ansible-playbook trove.dbaas.cluster_status -e apiVersion=trove.dbaas/v0 -e kind=Cluster 2>&1); then
  fail "cluster_status accepted apiVersion trove.dbaas/v0"
fi
grep -q "apiVersion: 'trove.dbaas/v0' is not supported" <<<"$output" || fail "unexpected failure: $output"

echo "galaxy check: $(basename "$TARBALL") installs alone; $(wc -w <<<"$playbooks") playbooks pass --syntax-check"
