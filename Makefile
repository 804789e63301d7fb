# Build / test entry points for the cnf.ebpf Ansible collection.
# `make test` is what CI runs (via .ci/run); see docs/development.md.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON        ?= python3
SANITY_PYTHON ?= 3.11
SANITY_ARGS   ?=
PYTEST_ARGS   ?=
DEMO_REPORT   ?= $(CURDIR)/.build/demo-report

ROOT       := $(CURDIR)
VENV       := $(ROOT)/.venv
BIN        := $(VENV)/bin
BUILD      := $(ROOT)/.build
COLL_PATH  := $(BUILD)/collections
COLL_LINK  := $(COLL_PATH)/ansible_collections/cnf/ebpf
STATUS_DIR := $(BUILD)/status

# Everything below runs the venv's tools first.
export PATH := $(BIN):$(PATH)

# Environment for pytest / ansible-playbook: the collection is importable as
# ansible_collections.cnf.ebpf and modules run with the venv's interpreter.
COLL_ENV := PYTHONPATH=$(COLL_PATH) \
	ANSIBLE_COLLECTIONS_PATH=$(COLL_PATH) \
	ANSIBLE_PYTHON_INTERPRETER=$(BIN)/python

# The collection tarball, and the tarball installed into a fresh collections path: $(INSTALLED_ENV) runs playbooks
# from that copy alone (no linked tree on PYTHONPATH, no other collections path, no ansible_collections on sys.path).
VERSION        := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL        := $(BUILD)/dist/cnf-ebpf-$(VERSION).tar.gz
INSTALLED      := $(BUILD)/installed
INSTALLED_COLL := $(INSTALLED)/ansible_collections/cnf/ebpf
INSTALLED_ENV  := env -u PYTHONPATH ANSIBLE_COLLECTIONS_PATH=$(INSTALLED) ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
	ANSIBLE_PYTHON_INTERPRETER=$(BIN)/python

# System packages. The collection's own, on every host it manages (bindep.txt's dpkg names: the default profile, and
# the bcc profile for bpf_program's loader=bcc; tests/unit/test_packaging.py keeps them equal), then what development
# and CI add: golang/cilium-ebpf/clang-format for bpf_codegen's outputs, Debian's kernel headers for the bcc tests
# (the bpf_host role links the headers for a running kernel that has none).
APT_RUNTIME_PKGS := clang llvm libc6-dev linux-libc-dev libbpf1 libbpf-dev bpftool iproute2
APT_BCC_PKGS     := python3-bpfcc
APT_DEV_PKGS     := make git rsync libelf-dev ethtool python3-venv shellcheck chromium chromium-driver golang-go \
	golang-github-cilium-ebpf-dev clang-format linux-headers-$(shell dpkg --print-architecture 2>/dev/null || echo amd64)
APT_PKGS := $(APT_RUNTIME_PKGS) $(APT_BCC_PKGS) $(APT_DEV_PKGS)

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help deps apt-deps venv collection-link bpffs promtool unit integration sanity \
	lint test demo demo-clean demo-check molecule build install ee clean

help:
	@echo "targets: deps collection-link bpffs promtool unit integration sanity lint test demo demo-clean demo-check molecule build install ee clean"

## ---------------------------------------------------------------- setup

deps: apt-deps venv

apt-deps:
	@missing=""; \
	for p in $(APT_PKGS); do \
	  dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo ">> apt-get install:$$missing"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements-dev.txt
	@[ -x "$(BIN)/python" ] || $(PYTHON) -m venv "$(VENV)"
	"$(BIN)/python" -m pip install -q -r requirements-dev.txt
	@touch "$@"

collection-link:
	@mkdir -p "$(dir $(COLL_LINK))"
	@if [ "$$(readlink "$(COLL_LINK)" 2>/dev/null)" != "../../../.." ]; then \
	  rm -rf "$(COLL_LINK)"; ln -s ../../../.. "$(COLL_LINK)"; \
	fi
	@test -f "$(COLL_LINK)/galaxy.yml"

bpffs:
	@if ! mountpoint -q /sys/fs/bpf; then \
	  $(SUDO) mkdir -p /sys/fs/bpf; \
	  $(SUDO) mount -t bpf bpf /sys/fs/bpf; \
	fi
	@mount | grep -q ' /sys/fs/bpf type bpf ' && echo ">> bpffs mounted on /sys/fs/bpf"

# promtool, for `promtool check metrics` on cnf.ebpf.bpf_metrics's files (tests/integration/test_role_metrics.py): taken
# from Debian's prometheus package, downloaded and unpacked into .build/tools, not installed (the package would
# start a Prometheus server); the server binary is dropped.
PROMTOOL := $(BUILD)/tools/usr/bin/promtool
promtool: $(PROMTOOL)

$(PROMTOOL):
	@rm -rf "$(BUILD)/tools/deb"; mkdir -p "$(BUILD)/tools/deb"
	cd "$(BUILD)/tools/deb" && { apt-get download -q prometheus || { $(SUDO) apt-get update -q && apt-get download -q prometheus; }; }
	dpkg-deb -x "$(BUILD)"/tools/deb/prometheus_*.deb "$(BUILD)/tools"
	@rm -rf "$(BUILD)/tools/deb" "$(BUILD)/tools/usr/bin/prometheus"; touch "$@"
	@"$@" --version | head -1

## ---------------------------------------------------------------- tests

# run_pytest(name, dir): pytest exit code 5 ("no tests collected") is accepted
# only while the directory is missing or holds no test_*.py / *_test.py file; it is
# then recorded as EMPTY (not PASSED) in $(STATUS_DIR) and reported by `make
# test`. Exit 5 with test files present is a failure.
define run_pytest
	@mkdir -p "$(STATUS_DIR)"; rm -f "$(STATUS_DIR)/$(1)".*; \
	if [ ! -d $(2) ]; then \
	  echo "WARNING: $(2) does not exist yet -- recorded as EMPTY"; \
	  touch "$(STATUS_DIR)/$(1).empty"; exit 0; \
	fi; \
	rc=0; $(COLL_ENV) "$(BIN)/python" -m pytest $(2) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ] && [ -z "$$(find $(2) \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit 2>/dev/null)" ]; then \
	  echo "WARNING: $(2) contains no tests yet (pytest exit 5) -- recorded as EMPTY"; \
	  touch "$(STATUS_DIR)/$(1).empty"; exit 0; \
	fi; \
	exit $$rc
endef

unit: venv collection-link
	$(call run_pytest,unit,tests/unit)

integration: venv collection-link bpffs promtool
	@[ "$$(id -u)" = 0 ] || { echo "integration tests need root (bpf(2), bpffs)"; exit 1; }
	$(call run_pytest,integration,tests/integration)

# ansible-test needs the collection at .../ansible_collections/cnf/ebpf and
# must not see .venv/.build: copy the tracked + untracked-not-ignored files to
# a scratch dir outside the repo (not a git repo: ansible-test then uses every
# file there) and run sanity there. Results land in .build/sanity-output.
#
# ansible-test bootstraps pip in its private venvs with a get-pip script that
# it downloads from a host CI cannot reach; .ci/get_pip_offline.py stands in
# for it (installed into ansible-test's cache unless a real one is there).
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache
sanity: venv
	@ver="$$(python -c 'import inspect, re; from ansible_test._internal import python_requirements as m; \
	  print(re.search(r"pip=.([0-9.]+).", inspect.getsource(m.get_venv_packages)).group(1))')"; \
	boot="$(ANSIBLE_TEST_CACHE)/get_pip_$${ver//./_}.py"; \
	if [ ! -e "$$boot" ] || grep -q 'cnf.ebpf offline get-pip' "$$boot"; then \
	  mkdir -p "$(ANSIBLE_TEST_CACHE)"; cp .ci/get_pip_offline.py "$$boot"; \
	fi
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	dest="$$tmp/ansible_collections/cnf/ebpf"; mkdir -p "$$dest"; \
	git ls-files -co --exclude-standard -z \
	  | rsync -a --from0 --files-from=- --ignore-missing-args ./ "$$dest/"; \
	rc=0; \
	( cd "$$dest" && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH \
	    ansible-test sanity --python $(SANITY_PYTHON) --requirements --color no $(SANITY_ARGS) ) || rc=$$?; \
	rm -rf "$(BUILD)/sanity-output"; mkdir -p "$(BUILD)"; \
	if [ -d "$$dest/tests/output" ]; then cp -a "$$dest/tests/output" "$(BUILD)/sanity-output"; fi; \
	exit $$rc

# ansible-lint resolves cnf.ebpf.* in playbooks/roles through the collection link.
lint: venv collection-link
	@rc=0; \
	echo ">> ruff check"; ruff check . || rc=1; \
	echo ">> ansible-lint"; $(COLL_ENV) ansible-lint || rc=1; \
	echo ">> antsibull-changelog lint"; antsibull-changelog lint || rc=1; \
	exit $$rc

# Runs every suite even if an earlier one fails; fails if any failed. demo-check runs the README's demo and its
# cleanup, as a user on a fresh machine would.
SUITES := unit integration sanity lint demo-check
test: deps collection-link bpffs
	@fail=""; rm -rf "$(STATUS_DIR)"; mkdir -p "$(STATUS_DIR)"; \
	for t in $(SUITES); do \
	  echo "================================================= make $$t"; \
	  if $(MAKE) --no-print-directory $$t; then \
	    [ -e "$(STATUS_DIR)/$$t.empty" ] || touch "$(STATUS_DIR)/$$t.passed"; \
	  else \
	    touch "$(STATUS_DIR)/$$t.failed"; fail="$$fail $$t"; \
	  fi; \
	done; \
	echo "================================================= summary"; \
	for t in $(SUITES); do \
	  for s in passed empty failed; do \
	    if [ -e "$(STATUS_DIR)/$$t.$$s" ]; then printf '%-12s %s\n' "$$t" "$$(echo $$s | tr a-z A-Z)"; fi; \
	  done; \
	done; \
	if [ -n "$$fail" ]; then echo "FAILED:$$fail"; exit 1; fi; \
	if ls "$(STATUS_DIR)"/*.empty >/dev/null 2>&1; then \
	  echo "NOTE: some test suites are still EMPTY (no tests collected)"; \
	fi

## ---------------------------------------------------------------- misc

# The sandbox demo: two local "hosts" (demo/inventory.yml), each a pair of network namespaces joined by veth
# pairs (demo/sandbox.sh); both CNFs deployed with the roles, real traffic, a terminal summary and the HTML report
# in $(DEMO_REPORT). `make demo-clean` removes the CNFs and the sandbox and checks that nothing is left.
# The playbooks run from the collection as built and installed (`make install`), not from the linked tree, so a file
# the build leaves out fails the demo.
DEMO_ENV := $(INSTALLED_ENV) ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
demo: deps install bpffs
	rm -rf "$(DEMO_REPORT)"
	demo/sandbox.sh up
	$(DEMO_ENV) ansible-playbook -i demo/inventory.yml cnf.ebpf.deploy
	PYTHON="$(BIN)/python" demo/sandbox.sh traffic
	$(DEMO_ENV) ansible-playbook -i demo/inventory.yml cnf.ebpf.report -e fleet_report_dest=$(DEMO_REPORT)
	@echo ">> report: $(DEMO_REPORT)/report.html (clean up with: make demo-clean)"

demo-clean: venv
	@[ -f "$(INSTALLED_COLL)/MANIFEST.json" ] || $(MAKE) --no-print-directory install
	-$(DEMO_ENV) ansible-playbook -i demo/inventory.yml cnf.ebpf.deploy -e cnf_state=absent
	demo/sandbox.sh down
	demo/sandbox.sh check

# The demo, then its cleanup whatever the demo did; fails if either failed or anything is left behind.
demo-check:
	@rc=0; $(MAKE) --no-print-directory demo || rc=$$?; \
	$(MAKE) --no-print-directory demo-clean || rc=1; \
	test -s "$(DEMO_REPORT)/report.html" || { echo "no report was written"; rc=1; }; \
	exit $$rc

# VM scenarios: Debian 12 guests under qemu (TCG), the image built offline and cached in .build/vm (keyed by its
# inputs). MOLECULE_SCENARIOS picks some; the guests' Python is their own, so no ANSIBLE_PYTHON_INTERPRETER here.
MOLECULE_APT       := qemu-system-x86 qemu-utils mmdebstrap openssh-client e2fsprogs
MOLECULE_SCENARIOS ?= default reboot xdp_filter upgrade rolling tracing
molecule: deps collection-link
	@$(MAKE) --no-print-directory apt-deps APT_PKGS="$(MOLECULE_APT)"
	@rc=0; for s in $(MOLECULE_SCENARIOS); do \
	  echo "================================================= molecule $$s"; \
	  start=$$(date +%s); \
	  PYTHONPATH=$(COLL_PATH) ANSIBLE_COLLECTIONS_PATH=$(COLL_PATH) molecule test -s $$s || rc=1; \
	  echo ">> molecule $$s: $$(( $$(date +%s) - start )) s"; \
	done; exit $$rc

build: venv
	@mkdir -p "$(BUILD)/dist"
	ansible-galaxy collection build --force --output-path "$(BUILD)/dist" .

install: build
	rm -rf "$(INSTALLED)"
	env -u ANSIBLE_COLLECTIONS_PATH ansible-galaxy collection install -p "$(INSTALLED)" "$(TARBALL)"

# An execution environment's build context in $(BUILD)/ee (examples/execution-environment/): `podman build` it.
ee: build
	@mkdir -p "$(BUILD)/ee-src"
	cp "$(TARBALL)" "$(BUILD)/ee-src/cnf-ebpf.tar.gz"
	ansible-builder create -f examples/execution-environment/execution-environment.yml -c "$(BUILD)/ee" \
	  --output-filename Containerfile
	@echo ">> build context: $(BUILD)/ee (podman build -t cnf-ebpf-ee $(BUILD)/ee)"

clean:
	rm -rf "$(BUILD)" "$(VENV)" tests/output .pytest_cache .hypothesis .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
