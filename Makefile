# The README's commands. `make run` and `make test` do all setup on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: install run test lint format lock clean bench soak bench-wrk bench-profile bench-layers bench-dataloader bench-ab bench-lock

install: $(VENV)/.installed

# Reinstall whenever the lock or the project metadata changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: install
	$(BIN)/alembic upgrade head
	$(BIN)/uvicorn heroes_api.main:app --host $(HOST) --port $(PORT) --workers $(WORKERS) \
		--loop uvloop --http httptools --no-access-log --timeout-graceful-shutdown 30

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every dependency (run after editing pyproject.toml's dependency lists).
lock:
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --extra dev --output-file requirements.lock pyproject.toml

# Load benchmark (bench/README.md): not part of `make test` or CI. BENCH_QUICK=1 for a short run.
bench: $(VENV)/.bench-installed bench-wrk
	$(BIN)/python -m bench.run $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)

# 10 minutes of the mixed scenario at 64 connections: throughput per minute, server RSS.
soak: $(VENV)/.bench-installed bench-wrk
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

bench-wrk:
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk) \
		|| { echo "make bench needs wrk: install it (Debian: apt-get install wrk) and rerun" >&2; exit 1; }

$(VENV)/.bench-installed: bench/requirements.lock $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r bench/requirements.lock
	touch $@

bench-profile: $(VENV)/.bench-installed
	$(BIN)/python -m bench.profile $(or $(SCENARIO),point) $(BENCH_ARGS)

# CPU cost of one point read at each layer of the stack (bench/layers.py).
bench-layers: $(VENV)/.bench-installed
	$(BIN)/python -m bench.layers $(BENCH_ARGS)

# The natural batcher against aiodataloader in the served app (bench/dataloader.py).
bench-dataloader: $(VENV)/.bench-installed bench-wrk
	$(BIN)/python -m bench.dataloader $(BENCH_ARGS)

# A against B in one interleaved run (bench/ab.py): what a setting or a code change costs.
bench-ab: $(VENV)/.bench-installed bench-wrk
	$(BIN)/python -m bench.ab $(BENCH_ARGS)

bench-lock: install
	$(BIN)/python -m pip install --quiet pip-tools
	cd bench && ../$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements.lock requirements.in

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage bench/.work
