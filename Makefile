# The two commands a user types: `make demo` and `make test`. Both set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLUGINS := tap-sage300 target-basware tap-basware target-sage300
PYPROJECTS := pyproject.toml core/pyproject.toml sandbox/pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))

.PHONY: install test demo demo-serve lint meltano-install clean bench

$(BIN)/.installed: $(PYPROJECTS) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt \
		-e ./core[postgres] -e ./sandbox -e . $(addprefix -e ./,$(PLUGINS))
	touch $@

install: $(BIN)/.installed

# Meltano's own plugin virtualenvs (under .meltano/), used by `meltano run` in the demo and e2e tests.
# The folder is its owner's only: Meltano writes each plugin's config, secrets included, under
# .meltano/run/ while a job runs.
.meltano/.installed: $(BIN)/.installed meltano.yml $(PYPROJECTS)
	$(BIN)/meltano install
	chmod 700 .meltano
	touch $@

meltano-install: .meltano/.installed

# A third-party Singer target in its own venv: target-jsonl pins singer-python's old jsonschema
# and backoff, which must not leak into ours. The reuse test pipes tap-sage300 into it.
TARGET_JSONL := .venv-thirdparty/bin/target-jsonl
$(TARGET_JSONL):
	$(PYTHON) -m venv .venv-thirdparty
	.venv-thirdparty/bin/pip install -q target-jsonl==0.1.4

# Headless Chromium (Debian's package) for the report's browser test (tests/test_report_browser.py),
# installed when missing; `make demo` does not need it.
.PHONY: chromium
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

test: install meltano-install $(TARGET_JSONL) chromium
	TARGET_JSONL=$(abspath $(TARGET_JSONL)) $(BIN)/python -m pytest

# Benchmarks (bench/, figures not tests; never part of `make test`). The peer tap, from PyPI,
# lives in its own venv: its pins would clash with ours.
PEER_TAP := .venv-bench-peer/bin/tap-rest-api-msdk
$(PEER_TAP):
	$(PYTHON) -m venv .venv-bench-peer
	.venv-bench-peer/bin/pip install -q tap-rest-api-msdk==1.4.2

bench: install meltano-install $(PEER_TAP)
	cd bench && ../$(BIN)/python run_all.py

demo: install meltano-install
	$(BIN)/python -m ml_connector.demo

# The demo, then the simulators keep serving its data so its failure can be fixed by hand
# (README, "Fix the demo's failed invoice yourself"); Ctrl-C stops them.
demo-serve: install meltano-install
	$(BIN)/python -m ml_connector.demo --serve

lint: install
	$(BIN)/ruff check .

# Plugin READMEs: the settings table between <!-- settings:start/end --> from each plugin's
# `--about --format=markdown` (tests/test_docs.py fails when one is out of date).
.PHONY: docs
docs: install
	$(BIN)/python scripts/plugin_docs.py

clean:
	rm -rf $(VENV) .venv-thirdparty .venv-bench-peer .meltano .pytest_cache
