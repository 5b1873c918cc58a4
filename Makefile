# Two commands on a fresh machine:  `make demo` (the main job)  and  `make test` (the test suite).
# Both create .venv and install pbx-router with its test extras on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pbx-router demo

# The whole suite (embedded PostgreSQL), then the database-heavy tests again against an external
# server given only by URL (the machine's own PostgreSQL, started in a throwaway cluster).
DB_TESTS := tests/store tests/scheduling tests/booking tests/admin/test_admin_persistence.py tests/calls/test_call_flow.py

# The real Asterisk 22.10.1 the tests in tests/real_pbx run against: built from source offline by
# the shared script (10-15 minutes the first time, then it returns at once), with sipp and sounds.
ASTERISK_BUILD ?= ../shared/asterisk/build.sh

# Lint and types first (seconds), so a mistake fails before the long suite starts.
test: $(STAMP)
	bash $(ASTERISK_BUILD)
	$(BIN)/ruff check .
	$(BIN)/mypy
	# Understanding on the held-out corpus (never tuned on), typed and then spoken, with the
	# thresholds reached (README, Testing): a regression fails the run.
	$(BIN)/pbx-router evaluate -r examples/clinic.yaml tests/corpus/heldout.tsv --failures 0 \
	    --min-accuracy 0.87 --min-emergency-recall 0.94 --max-false-emergency 0.02
	$(BIN)/pbx-router evaluate -r examples/clinic.yaml tests/corpus/heldout.tsv --audio --failures 0 \
	    --min-accuracy 0.82 --min-emergency-recall 0.72 --max-false-emergency 0.04 --max-wer 0.14
	$(BIN)/python -m pytest
	$(BIN)/python scripts/external_postgres.py $(BIN)/python -m pytest $(DB_TESTS)

bench: $(STAMP)
	for b in call_setup decide understand queues booking listening_capacity real_pbx; do $(BIN)/python benchmarks/$$b.py --quick || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
