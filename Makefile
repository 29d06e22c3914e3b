# Two entry points from a fresh clone: `make demo` and `make test` (`make simulate` runs
# the samples in-process, without Kafka).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := rebalance_stream contracts operators ledger sinks streams brokers

.PHONY: demo simulate test lint pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rebalance-stream demo

simulate: $(STAMP)
	$(BIN)/rebalance-stream simulate examples/plans/*.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict -p rebalance_stream

# A fixed hash seed: the fuzz tests then try the same inputs on every run (test_decode_fuzz.py).
pytest: $(STAMP)
	PYTHONHASHSEED=0 $(BIN)/pytest --cov --cov-report=term
	$(BIN)/coverage report --include='contracts/*,operators/*,ledger/*' --fail-under=90

test: lint pytest

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis
