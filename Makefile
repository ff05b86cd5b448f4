# tcaudit developer entry points. Everything runs as root on Debian 12 (see README.md).
SHELL := /bin/bash
PY_SYS := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
KREL := $(shell uname -r)
DISTRO := $(shell . /etc/os-release 2>/dev/null && echo $$ID)
# Debian: the generic headers package (linked below); Ubuntu ships headers per kernel
HEADERS_PKG := $(if $(filter ubuntu,$(DISTRO)),linux-headers-$(KREL),linux-headers-amd64)
TOOLS_PKG := $(if $(filter ubuntu,$(DISTRO)),linux-tools-common,bpftool)
APT_PACKAGES := python3-venv python3-bpfcc iproute2 iputils-ping clang llvm libbpf-dev $(TOOLS_PKG) $(HEADERS_PKG)
STAMP := $(VENV)/.installed
# The Datadog Agent check (integrations/tcaudit) is tested in a venv of its own: its
# datadog-checks-base[deps] brings a cryptography that must not meet Debian's pyOpenSSL
# in the system-site-packages venv. 38.5.0: 38.6/38.7 pin a certifi the index lacks.
AGENT_VENV := .venv-agent
AGENT_STAMP := $(AGENT_VENV)/.installed
AGENT_BASE := datadog-checks-base[deps]==38.5.0
AGENT_SRC := $(shell find integrations/tcaudit -type f -not -path '*/tests/*' -not -name '*.pyc')

# The node image (docs/image.md): deploy/Dockerfile built by buildah on a Debian 12 root
# filesystem that mmdebstrap makes here (Docker Hub is out of reach), imported as its
# BASE; exported to build/image/rootfs for `make image-test`. Each step is redone only
# when its inputs change: the base when its script does, the image when the Dockerfile,
# the build script or the package's files do.
IMAGE_DIR := build/image
IMAGE_APT := mmdebstrap buildah podman
IMAGE_BASE := $(IMAGE_DIR)/debian-bookworm.tar
IMAGE_INPUTS := deploy/Dockerfile .dockerignore deploy/image/build.sh setup.cfg pyproject.toml \
  README.md $(shell find tcaudit bpf -type f \( -name '*.py' -o -name '*.c' -o -name '*.h' \
  -o -name '*.json' -o -name py.typed \) -not -path '*/__pycache__/*')

.PHONY: setup test lint typecheck pytest agent-test vagrant-validate demo bench clean \
  image image-test image-clean

setup: $(STAMP) /lib/modules/$(KREL)/build $(AGENT_STAMP)

# apt: only when a package is missing, so `make setup` is idempotent and quick when done
.apt-done:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@touch $@

# bcc compiles against kernel headers. This kernel ships none, so link Debian's
# linux-headers-amd64 (the arch part as build, the -common part as source); uapi-only
# programs do not mind the version difference.
/lib/modules/$(KREL)/build: | .apt-done
	@hdr=$$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1); \
	common=$$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1); \
	if [ -z "$$hdr" ]; then echo "setup: no /usr/src/linux-headers-*-amd64 found" >&2; exit 3; fi; \
	mkdir -p /lib/modules/$(KREL); \
	ln -sfn "$$hdr" /lib/modules/$(KREL)/build; \
	ln -sfn "$${common:-$$hdr}" /lib/modules/$(KREL)/source; \
	echo "setup: linked $$hdr into /lib/modules/$(KREL)/{build,source}"

# the venv comes from Debian's python (not whatever python3 is first on PATH) with the
# system site-packages, because bcc is Debian's python3-bpfcc, not the PyPI "bcc"
$(STAMP): .apt-done setup.cfg pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# build the check's wheel, check what is in it, install it with the base it needs
$(AGENT_STAMP): $(AGENT_SRC) | .apt-done
	@test -x $(AGENT_VENV)/bin/python || $(PY_SYS) -m venv $(AGENT_VENV)
	$(AGENT_VENV)/bin/pip install -q --disable-pip-version-check '$(AGENT_BASE)' pytest
	rm -rf build/agent-wheel
	$(AGENT_VENV)/bin/pip wheel -q --disable-pip-version-check --no-deps -w build/agent-wheel integrations/tcaudit
	$(AGENT_VENV)/bin/python integrations/tcaudit/check_wheel.py build/agent-wheel/datadog_tcaudit-*.whl
	$(AGENT_VENV)/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps build/agent-wheel/datadog_tcaudit-*.whl
	@touch $@

# the check's tests, in its own venv, on the installed wheel (-p no:ddtrace: fast)
agent-test: $(AGENT_STAMP)
	cd integrations/tcaudit && ../../$(AGENT_VENV)/bin/python -m pytest -q -p no:ddtrace -p no:cacheprovider tests

lint: setup
	$(VENV)/bin/ruff check tcaudit bpf tests bench integrations
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy

# TCAUDIT_REQUIRE_PRIVILEGED=1 turns every skip of a root/kernel test into a failure.
# tests/image needs the image: `make image-test` runs it (make test does too).
pytest: setup
	TCAUDIT_REQUIRE_PRIVILEGED=1 $(PY) -m pytest -q --ignore=tests/image tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Debian's vagrant checks the Vagrantfile (no hypervisor needed for validate)
.vagrant-done:
	@command -v vagrant >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends vagrant; }
	@touch $@

vagrant-validate: .vagrant-done
	VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate --ignore-provider

# the image test fits: about 2 minutes cold (apt, mmdebstrap, build), under one warm
test: lint typecheck vagrant-validate pytest agent-test image-test

# the image tools, only when one is missing (like .apt-done)
.image-apt-done:
	@missing=""; for p in $(IMAGE_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "image: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(IMAGE_BASE): deploy/image/debian-base.sh | .image-apt-done
	deploy/image/debian-base.sh $@

# build.sh keeps the archive and rootfs when the image id did not change; the touch
# records that the inputs were looked at
$(IMAGE_DIR)/image.json: $(IMAGE_BASE) $(IMAGE_INPUTS) | .image-apt-done
	deploy/image/build.sh $(IMAGE_BASE) $(IMAGE_DIR)
	@touch $@

image: $(IMAGE_DIR)/image.json

# the image's root filesystem run as the DaemonSets run the image (tests/image); the
# kernel tests there fail, never skip, when they cannot run. Part of `make test`.
image-test: setup image
	TCAUDIT_REQUIRE_PRIVILEGED=1 TCAUDIT_IMAGE_ROOTFS=$(IMAGE_DIR)/rootfs \
	  $(PY) -m pytest -q tests/image; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# build/image and, in the containers' storage, the base and every image built on it
# (they inherit its label tcaudit.base.sha256: the layer cache included, nothing else)
image-clean:
	rm -rf $(IMAGE_DIR)
	@if command -v buildah >/dev/null; then \
	  ids=$$(buildah images -a -q --filter label=tcaudit.base.sha256 | sort -u); \
	  if [ -n "$$ids" ]; then buildah rmi -f $$ids >/dev/null; fi; \
	fi

demo: setup
	$(PY) -m tcaudit.lab.demo

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(AGENT_VENV) .apt-done .vagrant-done .image-apt-done .vagrant .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
