# Two commands on a fresh machine with only Python and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: venv demo demo-cbr test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	rm -f demo-ledger.jsonl demo-cbr-ledger.jsonl
	$(BIN)/python -m orchestrator run --simulate --manifest configs/example-manifest.csv \
		--ledger demo-ledger.jsonl --config configs/example.toml
	$(BIN)/python -m orchestrator report demo-ledger.jsonl
	@# Coverage of a simulated estate aged a week (exit 3: some resources are not covered).
	$(BIN)/python -m orchestrator coverage --simulate --config configs/example.toml \
		--sim-age-days 7 --rpo 26h || [ $$? -eq 3 ]

# The same engine against CBR v3 (vaults and backups): see docs/cbr.md.
demo-cbr: $(STAMP)
	rm -f demo-cbr-ledger.jsonl
	$(BIN)/python -m orchestrator run --simulate --service cbr \
		--manifest configs/example-cbr-manifest.csv \
		--ledger demo-cbr-ledger.jsonl --config configs/example.toml
	$(BIN)/python -m orchestrator report demo-cbr-ledger.jsonl

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests $(wildcard bench)
	$(BIN)/ruff format --check orchestrator tests $(wildcard bench)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache demo-ledger.jsonl demo-cbr-ledger.jsonl
