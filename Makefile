# trove.dbaas: `make demo` runs a 3-member PostgreSQL cluster, `make test` runs what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
COLLECTION := collections/ansible_collections/trove/dbaas
APT_PACKAGES := podman runc netavark aardvark-dns iptables debootstrap python3-venv postgresql-client openssh-client make
DEMO ?= examples/postgresql-replicated.yml
TARBALL := build/trove-dbaas-$(shell sed -n 's/^version: //p' $(COLLECTION)/galaxy.yml).tar.gz
# Quality gates whose dependencies conflict with requirements.txt get their own venv. `ansible` brings
# the collections trove.dbaas depends on, so galaxy-importer's ansible-lint can resolve their modules.
GATES := .venv-gates
GATES_PACKAGES := 'galaxy-importer>=0.4.44,<0.5' 'ansible-builder>=3.1,<4' 'ansible>=11,<13'
# The docs toolchain has a venv of its own too (Sphinx and antsibull pin docutils and pydantic).
DOCS_VENV := .venv-docs
DOCS_PACKAGES := 'antsibull-docs>=2.20,<3' 'antsibull-changelog>=0.29,<1' 'ansible-core>=2.18,<2.20' \
  'sphinx>=8,<10' 'sphinx-ansible-theme>=0.10,<1'
# ansible-test's HOME (its caches and sanity venvs), kept out of the user's ~/.ansible.
ANSIBLE_TEST_HOME := $(CURDIR)/$(GATES)/home
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)
# The project's own podman settings (installed by the image/backend roles); /etc is left alone.
export CONTAINERS_CONF := /var/lib/trove-dbaas/containers.conf

.PHONY: help deps gates docs-deps images demo test checks unit e2e e2e-slow lint build galaxy sanity importer ee docs release-notes bench chaos scale clean \
  openstack-up openstack-down openstack-smoke openstack-test
help:
	@echo "make demo   - install, build images, apply $(DEMO), show status and DSN"
	@echo "make test   - lint, unit, galaxy, importer, ee, sanity, docs, then end-to-end tests on real containers and the nova backend's tests on a local OpenStack (what CI runs)"
	@echo "make e2e-slow - the end-to-end tests too long for make test (marked slow)"
	@echo "make lint   - ansible-lint (production), ruff, yamllint"
	@echo "make build  - build the collection tarball"
	@echo "make galaxy - install the tarball into an empty collections path and check it"
	@echo "make sanity - ansible-test sanity on the collection"
	@echo "make importer - galaxy-importer on the tarball (what Galaxy runs on upload)"
	@echo "make ee     - the execution environment's build context in build/ee (no image build)"
	@echo "make docs   - lint the collection docs and changelog, build the HTML docs in build/docs/build/html"
	@echo "make release-notes - fold changelog fragments into CHANGELOG.rst for galaxy.yml's version (docs/releasing.md)"
	@echo "make bench  - switchover/failover write gaps, apply times, backup/restore MB/s (JSON)"
	@echo "make chaos  - faults injected into real members under writes: outage, lost writes, split brain, killed playbooks (JSON)"
	@echo "make scale  - apply time of 1, 5 and 10 clusters applied at once (JSON)"
	@echo "make clean  - delete test/demo clusters and build output"
	@echo "make openstack-up / openstack-down - a local OpenStack on 127.0.0.1 (docs/development/openstack-harness.md)"
	@echo "make openstack-smoke - server group, security group, ports and a server on it, read back and deleted"
	@echo "make openstack-test - the nova backend's tests against the local OpenStack (brings it up)"

$(VENV)/.installed: requirements.txt
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

deps: $(VENV)/.installed

# The stamp holds the package list; a venv made for another list installs again.
ifneq ($(file < $(GATES)/.installed),$(GATES_PACKAGES))
.PHONY: $(GATES)/.installed
endif
$(GATES)/.installed:
	python3 -m venv $(GATES)
	$(GATES)/bin/pip install -q --upgrade pip
	$(GATES)/bin/pip install -q $(GATES_PACKAGES)
	echo "$(GATES_PACKAGES)" >$@

gates: $(GATES)/.installed

$(DOCS_VENV)/.installed:
	python3 -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q --upgrade pip
	$(DOCS_VENV)/bin/pip install -q $(DOCS_PACKAGES)
	touch $@

docs-deps: $(DOCS_VENV)/.installed

images: deps
	$(BIN)/ansible-playbook playbooks/image_build.yml

demo: images
	$(BIN)/ansible-playbook playbooks/cluster_apply.yml -e @$(DEMO)
	$(BIN)/ansible-playbook playbooks/cluster_status.yml -e @$(DEMO)

# The collection's tests through ansible-test units, split by import context as Galaxy's certified
# collections are tested (modules and module_utils may import ansible.module_utils only; controller
# plugins anything). It runs the venv's own pytest (no --venv, no --requirements), so nothing is fetched.
unit: deps
	cd $(COLLECTION) && HOME=$(ANSIBLE_TEST_HOME) $(BIN)/ansible-test units --python 3.11
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider
	$(BIN)/python tools/gen_spec_reference.py --check

# One cluster per test module; modules run in parallel on two workers.
e2e: images
	$(BIN)/python -m pytest tests/e2e -v -p no:cacheprovider -n 2 --dist loadscope --durations=20 -m 'not slow' --junitxml=build/e2e-junit.xml

# The end-to-end tests too long for CI's budget (marked slow).
e2e-slow: images
	$(BIN)/python -m pytest tests/e2e -v -p no:cacheprovider -m slow

# The OpenStack API tests run beside the quality gates (one at a time, they leave a core free);
# the end-to-end tests then have the machine to themselves.
test: deps
	$(MAKE) --no-print-directory -j2 checks openstack-test
	$(MAKE) --no-print-directory e2e

checks: deps
	$(MAKE) --no-print-directory -j1 lint unit galaxy importer ee sanity docs

lint: deps
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production --offline

build: deps
	mkdir -p build
	$(BIN)/ansible-galaxy collection build $(COLLECTION) --output-path build --force

galaxy: build
	tools/galaxy_install_check.sh $(TARBALL)

# ansible-test fetches its pip bootstrap from a host that is not reachable; a stand-in that uses
# ensurepip and PyPI is put in its cache (under ANSIBLE_TEST_HOME, with its sanity venvs).
sanity: deps
	pip_version=$$($(BIN)/python -c "from types import SimpleNamespace; \
	  from ansible_test._internal.python_requirements import get_venv_packages; \
	  print(get_venv_packages(SimpleNamespace(version='3.11'))['pip'].replace('.', '_'))"); \
	install -D -m 644 tools/get_pip_offline.py $(ANSIBLE_TEST_HOME)/.ansible/test/cache/get_pip_$$pip_version.py
	cd $(COLLECTION) && HOME=$(ANSIBLE_TEST_HOME) $(BIN)/ansible-test sanity --python 3.11

# galaxy-importer reports problems as ERROR and WARNING lines (ansible-lint's findings among them) and
# still exits 0. Any of them fails the target but the note that tests/sanity/ignore-*.txt exists.
importer: gates build
	cd build && PATH=$(CURDIR)/$(GATES)/bin:$$PATH $(CURDIR)/$(GATES)/bin/python -m galaxy_importer.main \
	  $(CURDIR)/$(TARBALL) | tee importer.log
	! grep -E '^(ERROR|WARNING)' build/importer.log | grep -v '^WARNING: Ignore files skip ansible-test sanity tests'

# The context only: base images come from a registry. introspect shows what the collection adds.
ee: gates build
	cp $(TARBALL) build/trove-dbaas.tar.gz
	$(GATES)/bin/ansible-builder create -f execution-environment.yml -c build/ee
	test -f build/ee/_build/collections/trove-dbaas.tar.gz
	grep -qx 'ansible>=11,<13' build/ee/_build/requirements.txt
	$(GATES)/bin/ansible-builder introspect --sanitize collections | tee build/ee/introspect.yml
	grep -q "jsonschema.*from collection trove.dbaas" build/ee/introspect.yml
	grep -q "openssh-client .*from collection trove.dbaas" build/ee/introspect.yml

# antsibull-docs lint-collection-docs, antsibull-changelog lint, then the antsibull-docs Sphinx site
# (warnings are errors). The collection's dependencies come from the controller venv.
docs: deps docs-deps
	tools/build_docs.sh $(DOCS_VENV) $(VENV)

# antsibull-changelog asks ansible-doc about the collection's modules and plugins (new ones are listed).
release-notes: deps docs-deps
	cd $(COLLECTION) && PATH=$(CURDIR)/$(DOCS_VENV)/bin:$$PATH \
	  ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/collections:$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
	  antsibull-changelog release

bench: images
	$(BIN)/python benchmarks/postgresql.py
	$(BIN)/python benchmarks/postgresql_ha.py
	$(BIN)/python benchmarks/postgresql_backup.py
	$(BIN)/python benchmarks/mariadb.py
	$(BIN)/python benchmarks/mariadb_backup.py
	$(BIN)/python benchmarks/redis_engine.py

chaos: images
	$(BIN)/python benchmarks/chaos_postgresql_ha.py
	$(BIN)/python benchmarks/chaos_redis_sentinel.py
	$(BIN)/python benchmarks/chaos_mariadb.py
	$(BIN)/python benchmarks/chaos_redis_sharded.py
	$(BIN)/python benchmarks/chaos_postgresql_disk_full.py
	$(BIN)/python benchmarks/chaos_interrupted.py

# Apply time of 1, 5 and 10 clusters applied at once (docs/performance.md).
scale: images
	$(BIN)/python benchmarks/scale.py

# A local OpenStack (keystone, placement, glance, neutron, nova with the fake driver, ironic with fake
# hardware) for the nova/ironic backends' tests: its own Python 3.12 venv (.venv-openstack), state
# and logs in build/openstack.
openstack-up:
	tools/openstack/harness.sh up

openstack-down:
	tools/openstack/harness.sh down

openstack-smoke: deps openstack-up
	eval "$$(tools/openstack/harness.sh env)" && $(BIN)/python tools/openstack/smoke.py

# Clusters applied and deleted with the nova backend, read back through openstacksdk (docs/openstack.md).
# The cloud goes down afterwards, pass or fail: idle, its services still take CPU from the e2e tests.
openstack-test: deps openstack-up
	status=0; eval "$$(tools/openstack/harness.sh env)" && $(BIN)/python -m pytest tests/openstack -v -p no:cacheprovider \
	  || { status=$$?; tools/openstack/harness.sh errors; }; tools/openstack/harness.sh down; exit $$status

# Removes the demo cluster (with its volumes) and clusters left by interrupted test runs.
clean:
	-$(BIN)/ansible-playbook playbooks/cluster_delete.yml -e @$(DEMO) -e confirm=$$(sed -n 's/^  name: //p' $(DEMO) | head -1) -e purge=true
	-for c in $$(podman ps -a --format '{{index .Labels "trove.dbaas/cluster"}}' | grep '^e2e-' | sort -u); do \
	  podman rm -f $$(podman ps -aq --filter label=trove.dbaas/cluster=$$c); \
	  podman volume rm $$(podman volume ls -q --filter label=trove.dbaas/cluster=$$c); done
	rm -rf build $(COLLECTION)/tests/output
