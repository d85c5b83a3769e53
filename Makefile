# The two commands of the README are the contract: `make setup` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup test lint contracts bench demo clean

setup:
	@scripts/setup.sh

test: lint
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check keeper prover tests bench scripts
	$(VENV)/bin/mypy

contracts:
	@scripts/build_contracts.sh

bench:
	@for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf contracts/target .pytest_cache .mypy_cache
