# iopkt: `sudo make bench` (the main job) and `sudo make test`.
# Both set themselves up: a .venv with the Python packages, and Debian's
# iperf3, ping, tcpdump, tracepath and traceroute when they are missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: all setup test unit lint mutate cover bench compare bpf-overhead bpf-filter-cost lab-up lab-down clean root

all: test

root:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "iopkt: needs root (CAP_NET_ADMIN for TAPs and namespaces): run 'sudo make $(MAKECMDGOALS)'"; \
	  exit 1; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "installing Debian's python3-venv"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	  && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

setup: root $(STAMP)
	@missing=""; \
	command -v iperf3 >/dev/null || missing="$$missing iperf3"; \
	command -v ping   >/dev/null || missing="$$missing iputils-ping"; \
	command -v tcpdump >/dev/null || missing="$$missing tcpdump"; \
	command -v tracepath >/dev/null || missing="$$missing iputils-tracepath"; \
	command -v traceroute >/dev/null || missing="$$missing traceroute"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The whole suite: unit tests and real namespaces, TAPs and traffic, four
# at a time even on 2 cores, as most of them wait on traffic and processes,
# not the CPU (tests marked `alone`, which measure rates or times, run while
# no other test does; see tests/conftest.py).
test: root setup
	$(PY) -m pytest -q -n 4 $(ARGS)

# Unit tests only: no root needed.
unit: $(STAMP)
	$(PY) -m pytest -q tests --ignore=tests/integration $(ARGS)

# Test tooling for mutate and cover, installed on first use only.
QSTAMP := $(VENV)/.quality
$(QSTAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench,quality]'
	@touch $@

# The linters, installed on first use: ruff over the whole tree, and the
# layers contract of pyproject.toml (lint-imports: imports point down only).
LSTAMP := $(VENV)/.lint
$(LSTAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench,lint]'
	@touch $@

lint: $(LSTAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Mutation testing of the hot-path modules with the unit tests (no root;
# 27 min on a quiet 2-core VM). Last line: mutation score: K/N killed (P%).
mutate: $(QSTAMP)
	$(PY) scripts/mutate.py $(ARGS)

# Branch coverage of the unit tests, one row per module.
cover: $(QSTAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests --ignore=tests/integration \
	  --cov=iopkt --cov=drivers --cov-branch --cov-report=term $(ARGS)

# The main job: native versus shim with real traffic (FULL=1: the full matrix).
bench: root setup
	$(VENV)/bin/iopkt bench $(if $(FULL),--full) $(ARGS)

# What the capture taps cost when nobody captures (no root; about 5 s).
bpf-overhead: $(STAMP)
	PYTHONPATH=tests/unit $(PY) scripts/bpf_overhead.py $(ARGS)

bpf-filter-cost: $(STAMP)
	$(PY) scripts/bpf_filter_cost.py $(ARGS)

# Native with and without offload, the shim and both relays side by side, with targets
# (ARGS=--ipv6: native over IPv6 without and with TSO6 too, with their aims).
compare: root setup
	$(PY) -m iopkt.bench.relays $(ARGS)

lab-up: root setup
	$(VENV)/bin/iopkt lab up $(ARGS)

lab-down: root setup
	$(VENV)/bin/iopkt lab down $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache mutants .coverage htmlcov .ruff_cache
