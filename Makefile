# The two commands of the README are the contract: `make setup` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup test lint contracts bench demo clean stone

setup:
	@scripts/setup.sh

# PYTEST_ARGS narrows the run (e.g. PYTEST_ARGS="-m 'not devnet'"). pytest exits 5 when a
# selection holds no test: say so plainly instead of failing on an empty selection.
test: lint
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests matched PYTEST_ARGS=$(PYTEST_ARGS)"; exit 0; fi; \
	exit $$rc

lint:
	$(VENV)/bin/ruff check keeper prover tests bench scripts
	$(VENV)/bin/mypy

# Stone v3 from source, without Bazel (STONE_SRC= a checkout at 1414a54 or its tarball;
# default: the tarball in ../shared/stone/build). ~50 min on 2 cores; setup skips it.
stone:
	@$(PY) scripts/install_stone.py --build

contracts:
	@scripts/build_contracts.sh

demo:
	$(PY) -m keeper demo

bench:
	@for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf contracts/target .pytest_cache .mypy_cache
