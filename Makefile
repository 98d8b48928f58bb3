# Two commands: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-tools demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian tools the tests use: promtool, amtool and alertmanager, headless Chromium
# (and a Chinese font for its screenshots), docker-compose (for `config` only).
# Installed if absent, without starting the services their packages would start
# (policy-rc.d answers 101: "not allowed").
SYSTEM_TOOLS := promtool:prometheus amtool:prometheus-alertmanager chromium:chromium docker-compose:docker-compose
system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null; \
	  $$SUDO chmod +x /usr/sbin/policy-rc.d; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  status=$$?; $$SUDO rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi

demo: install
	$(BIN)/supplymon demo

# Two test files at a time (pytest-xdist, one file per worker): the end-to-end tests
# mostly wait on their workers and brokers, and one at a time took ~18 min here.
test: install system-tools
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.intake
	$(BIN)/python -m bench.notify
	$(BIN)/python -m bench.store

clean:
	rm -rf $(VENV) data *.egg-info
