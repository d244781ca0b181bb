# Two commands on a fresh Debian/Ubuntu machine:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := mosquitto influxdb influxdb-client sumo sumo-tools chromium
DURATION ?= 60

.PHONY: demo test setup system-deps venv lint bench clean

demo: setup  ## install everything and run the embedded pipeline for $(DURATION) s
	$(VENV)/bin/urbanbrain up --duration $(DURATION)

test: setup  ## install everything and run the whole test suite on real servers
	$(PY) -m pytest

setup: system-deps venv

system-deps:  ## Debian packages: mosquitto, influxd, SUMO (skipped when already there)
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ] || ! command -v influxd >/dev/null || ! command -v sumo >/dev/null || ! command -v chromium >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	@# Debian's packages enable these services; our stack runs its own on free ports.
	@-$(SUDO) systemctl disable --now mosquitto influxdb >/dev/null 2>&1 || true

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

bench: setup  ## throughput benchmarks on the local servers (writes bench/results/)
	$(PY) bench/run.py

clean:
	rm -rf var .pytest_cache
