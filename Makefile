# Lorong: `make demo` runs the main job on the embedded stack; `make test` runs every test.
# Both install what is missing first (Debian packages with apt-get, a .venv with Lorong) and
# reuse what is already there on a second run.

VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTEST  := $(VENV)/bin/pytest
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DEBS := mosquitto mosquitto-clients influxdb
TEST_DEBS := $(DEMO_DEBS) postgresql socat chromium chromium-driver

.PHONY: help setup setup-test demo test lint typecheck bench clean

help:
	@echo "make demo   - install what is missing, run stack + ingester + analytics + fleet + API"
	@echo "make test   - install what is missing, run the whole test suite"
	@echo "make lint   - ruff and mypy"

# --- Debian packages -----------------------------------------------------------------------
.stamps/debs-demo:
	@mkdir -p .stamps
	@bash scripts/apt-ensure.sh $(DEMO_DEBS)
	@touch $@

.stamps/debs-test: .stamps/debs-demo
	@bash scripts/apt-ensure.sh $(TEST_DEBS)
	@touch $@

# --- Python environment ---------------------------------------------------------------------
# The demo gets Lorong and its runtime packages only; the tests add the development extras (pytest,
# Playwright, mypy, schemathesis ...), several hundred MB more. A test environment serves the demo too.
$(VENV)/.installed-demo: pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) (a Python virtual environment)"; python3 -m venv $(VENV); }
	@echo "installing Lorong and its runtime packages into $(VENV) (first run only, about a minute)..."
	@start=$$(date +%s); $(PY) -m pip install -q --upgrade pip >/dev/null && \
	  $(PY) -m pip install -q -e . && echo "installed in $$(( $$(date +%s) - start )) s"
	@touch $@

$(VENV)/.installed-test: pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) (a Python virtual environment)"; python3 -m venv $(VENV); }
	@echo "installing Lorong and the development extras (pytest, Playwright, mypy ...) into $(VENV)..."
	@start=$$(date +%s); $(PY) -m pip install -q --upgrade pip >/dev/null && \
	  $(PY) -m pip install -q -e '.[dev]' && echo "installed in $$(( $$(date +%s) - start )) s"
	@touch $@ $(VENV)/.installed-demo

setup: .stamps/debs-demo $(VENV)/.installed-demo
setup-test: .stamps/debs-test $(VENV)/.installed-test

# Ctrl-C is how the demo stops: its exit 130 (SIGINT) is a normal end, not a make error. The trap keeps
# the recipe's shell alive to look at that status (make itself still stops on the same Ctrl-C).
demo: setup
	@trap : INT; $(VENV)/bin/lorong demo || test $$? -eq 130

# Two pytest-xdist workers, each taking whole test files (a file's module fixtures, such as its browser or
# influxd, start once); most tests wait on services, a browser or a broker, so two workers gain on 2 cores.
# Files go out in collection order (tests/conftest.py puts the longest first), not xdist's most-tests-first.
test: setup-test
	$(PYTEST) -q --durations=25 -n 2 --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy lorong ingest devices analytics api firmware_sim dashboards

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf var .stamps tests/artifacts
