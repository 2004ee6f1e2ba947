# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test system-packages peers lint typecheck pytest bench diagram clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[gateway,hw,test,demo]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ev-terminal demo --config deploy/terminal.toml --data var/demo

test: system-packages $(STAMP) peers lint typecheck pytest

system-packages:
	bash tests/system-packages.sh

# Peers that are not Python packages of ours: Prism (npm) for the processors, axe-core (npm)
# for the pages' accessibility checks.
peers: $(STAMP)
	$(PY) -m tests.processors.install
	$(PY) -m tests.web.axe

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

diagram: $(STAMP)
	$(VENV)/bin/ev-terminal diagram --markdown > docs/state-machine.md

clean:
	rm -rf $(VENV) var build *.egg-info
