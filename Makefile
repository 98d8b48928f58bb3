# Two commands: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/supplymon demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.memory

clean:
	rm -rf $(VENV) data *.egg-info
