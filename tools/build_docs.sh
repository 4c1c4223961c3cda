#!/usr/bin/env bash
# Collection docs: lint the module, plugin and role documentation, check the changelog
# configuration, then build the HTML site with antsibull-docs and Sphinx into build/docs/build/html.
# Any Sphinx warning fails the build (bad markup in DOCUMENTATION or meta/argument_specs.yml shows
# up as one). Usage: tools/build_docs.sh DOCS_VENV CONTROLLER_VENV
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
docs_venv=$(cd -- "$1" && pwd)
controller_venv=$(cd -- "$2" && pwd)
collection=$root/collections/ansible_collections/trove/dbaas
dest=$root/build/docs

# The collection from this tree first, then the collections it depends on, which come with the
# `ansible` package in the controller venv (requirements.txt).
purelib=$("$controller_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export ANSIBLE_COLLECTIONS_PATH=$root/collections:$purelib
export PATH=$docs_venv/bin:$PATH

echo "== antsibull-docs lint-collection-docs"
(cd "$collection" && antsibull-docs lint-collection-docs --plugin-docs .)

echo "== antsibull-changelog lint"
(cd "$collection" && antsibull-changelog lint)

echo "== antsibull-docs sphinx-init"
rm -rf "$dest"
# antsibull-docs wants its directories writable by their owner only.
mkdir -p -m 0755 "$dest"
chmod 0755 "$dest"
antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$dest" trove.dbaas
# No network here or in CI: no intersphinx inventories. The few labels of the Ansible docsite
# that generated pages refer to get a page of their own that links to it.
cat >>"$dest/conf.py" <<'EOF'

# Added by tools/build_docs.sh: built offline.
intersphinx_mapping = {}
EOF

echo "== antsibull-docs collection"
mkdir -p -m 0755 "$dest/rst"
chmod 0755 "$dest/rst"
antsibull-docs --config-file "$dest/antsibull-docs.cfg" collection --cleanup everything --fail-on-error \
  --use-current --dest-dir "$dest/rst" trove.dbaas
cat >"$dest/rst/ansible_docsite.rst" <<'EOF'
:orphan:

Ansible documentation
=====================

Generated pages refer to these topics of the Ansible documentation at https://docs.ansible.com/.

.. _ansible_configuration_settings:

Ansible configuration settings
------------------------------

https://docs.ansible.com/ansible/latest/reference_appendices/config.html

.. _action_plugins:

Action plugins
--------------

https://docs.ansible.com/ansible/latest/plugins/action.html

.. _common_return_values:

Common return values
--------------------

https://docs.ansible.com/ansible/latest/reference_appendices/common_return_values.html

.. _inventory_plugins:

Inventory plugins
-----------------

https://docs.ansible.com/ansible/latest/plugins/inventory.html

.. _playbooks_filters:

Using filters
-------------

https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_filters.html
EOF

echo "== sphinx-build"
sphinx-build -M html "$dest/rst" "$dest/build" -c "$dest" -W --keep-going -q
test -f "$dest/build/html/collections/trove/dbaas/index.html"
echo "docs: $dest/build/html/collections/trove/dbaas/index.html"
