# trove.dbaas: `make demo` runs a 3-member PostgreSQL cluster, `make test` runs what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
COLLECTION := collections/ansible_collections/trove/dbaas
APT_PACKAGES := podman runc netavark aardvark-dns debootstrap python3-venv postgresql-client openssh-client make
DEMO ?= examples/postgresql-replicated.yml
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)
# The project's own podman settings (installed by the image/backend roles); /etc is left alone.
export CONTAINERS_CONF := /var/lib/trove-dbaas/containers.conf

.PHONY: help deps images demo test unit e2e lint build bench clean
help:
	@echo "make demo   - install, build images, apply $(DEMO), show status and DSN"
	@echo "make test   - unit + end-to-end tests on real containers (what CI runs)"
	@echo "make lint   - ansible-lint (production), ruff, yamllint"
	@echo "make build  - build the collection tarball"
	@echo "make bench  - switchover/failover write gaps, apply times, backup/restore MB/s (JSON)"
	@echo "make clean  - delete test/demo clusters and build output"

$(VENV)/.installed: requirements.txt
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

deps: $(VENV)/.installed

images: deps
	$(BIN)/ansible-playbook playbooks/image_build.yml

demo: images
	$(BIN)/ansible-playbook playbooks/cluster_apply.yml -e @$(DEMO)
	$(BIN)/ansible-playbook playbooks/cluster_status.yml -e @$(DEMO)

unit: deps
	cd $(COLLECTION) && $(BIN)/python -m pytest tests/unit -q -p no:cacheprovider
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider
	$(BIN)/python tools/gen_spec_reference.py --check

# One cluster per test module; modules run in parallel on two workers.
e2e: images
	$(BIN)/python -m pytest tests/e2e -v -p no:cacheprovider -n 2 --dist loadscope

test: lint unit e2e build

lint: deps
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production --offline

build: deps
	mkdir -p build
	$(BIN)/ansible-galaxy collection build $(COLLECTION) --output-path build --force

bench: images
	$(BIN)/python benchmarks/postgresql.py
	$(BIN)/python benchmarks/postgresql_ha.py
	$(BIN)/python benchmarks/postgresql_backup.py

# Removes the demo cluster (with its volumes) and clusters left by interrupted test runs.
clean:
	-$(BIN)/ansible-playbook playbooks/cluster_delete.yml -e @$(DEMO) -e confirm=$$(sed -n 's/^  name: //p' $(DEMO) | head -1) -e purge=true
	-for c in $$(podman ps -a --format '{{index .Labels "trove.dbaas/cluster"}}' | grep '^e2e-' | sort -u); do \
	  podman rm -f $$(podman ps -aq --filter label=trove.dbaas/cluster=$$c); \
	  podman volume rm $$(podman volume ls -q --filter label=trove.dbaas/cluster=$$c); done
	rm -rf build
