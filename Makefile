# The README's commands. `make run` and `make test` do all setup on a fresh machine.
# Python 3.11, 3.12 or 3.13: python3.11 when there is one, else python3; PYTHON=... overrides.
SUPPORTED_PYTHONS := 3.11 3.12 3.13
PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# Seconds an idle keep-alive connection stays open: longer than the clients and proxies in front
# keep theirs (AWS ALB 60 s, nginx upstream keepalive 60 s, httpx 5 s), so the server never
# closes a connection just as a client reuses it.
KEEP_ALIVE ?= 75
# Proxies whose X-Forwarded-For / X-Forwarded-Proto uvicorn trusts (comma-separated, or *).
FORWARDED_ALLOW_IPS ?= 127.0.0.1
# With WORKERS > 1, the workers' metrics (prometheus-client multiprocess mode, which sums them)
# live in $(METRICS_DIR)/<pid>, a directory of this server's own (heroes_api.serve makes it at
# start and removes it at exit), so a second `make run` never touches a running one's. One worker
# keeps its metrics in memory: cheaper (see bench/README.md, "Cost of metrics") and just as exact.
METRICS_DIR ?= .metrics
SERVE_METRICS = $(if $(filter-out 1,$(WORKERS)),--metrics-dir $(abspath $(METRICS_DIR)))

# The served command's flags, shared by `make run`, the tests (`make serve-flags`) and README.
SERVE_FLAGS = --host $(HOST) --port $(PORT) --workers $(WORKERS) --loop uvloop --http httptools \
	--no-access-log --timeout-graceful-shutdown 30 \
	--timeout-keep-alive $(KEEP_ALIVE) --proxy-headers --forwarded-allow-ips '$(FORWARDED_ALLOW_IPS)'

# Stops with a message unless $(PYTHON) is a supported version.
define CHECK_PYTHON
v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
case " $(SUPPORTED_PYTHONS) " in \
*" $$v "*) echo "$(PYTHON) is Python $$v";; \
*) echo "heroes_api needs Python 3.11, 3.12 or 3.13, but $(PYTHON) is $${v:-not a working Python}:" \
	"install one of them, or pass its path: make PYTHON=/path/to/python3.12 ..." >&2; exit 1;; \
esac
endef

.PHONY: install install-dev python serve-flags run test test-fast lint format lock clean bench soak bench-wrk bench-profile bench-layers bench-dataloader bench-ab bench-patroni bench-lock

# Two locks: requirements.lock pins what serving needs ([project] dependencies), and
# requirements-dev.lock adds the dev extra (tests, linters) at the same pins. `make install` and
# `make run` install the first only; `make test`, `lint` and `format` add the second.
install: $(VENV)/.installed
install-dev: $(VENV)/.dev-installed

# The interpreter `make install` builds .venv with, or why none fits.
python:
	@$(CHECK_PYTHON)

# Reinstall whenever a lock or the project metadata changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || { $(CHECK_PYTHON) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.lock $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	touch $@

# Migrate once, then serve. heroes_api.serve runs uvicorn in its own process (exec: make's
# SIGTERM reaches uvicorn with any number of workers) and owns the metrics directory. uvicorn's own
# access log stays off: the app writes one line per request with the route template and the
# request id (heroes_api.observe).
run: install
	$(BIN)/alembic upgrade head
	exec $(BIN)/python -m heroes_api.serve $(SERVE_METRICS) heroes_api.main:app $(SERVE_FLAGS)

serve-flags:
	@echo "$(SERVE_FLAGS)"

# Test processes (pytest-xdist): two, as many as CI's machine has cores; TEST_JOBS=auto takes one
# per core, TEST_JOBS=0 runs in this process alone (for pdb and print debugging).
TEST_JOBS ?= 2

# The whole suite with coverage enforced; --durations names the slowest tests in CI's output.
test: install-dev
	$(BIN)/pytest -n $(TEST_JOBS) --durations=25 $(PYTEST_ARGS)

# The edit-test loop: everything but the tests marked slow (real servers, deploys, property and
# schema runs, query plans), without coverage. `make test` still runs them all.
test-fast: install-dev
	$(BIN)/pytest -n $(TEST_JOBS) --no-cov -m "not slow" $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every dependency (run after editing pyproject.toml's dependency lists): the runtime set,
# then the dev set constrained to the runtime pins, so both locks agree on every shared package.
PIP_COMPILE = $(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links
lock:
	$(BIN)/python -m pip install --quiet pip-tools
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint requirements.lock --output-file requirements-dev.lock pyproject.toml

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

# A Patroni + etcd failover drill under write load (bench/patroni_drill.py): installs patroni and
# etcd-server with apt when missing (as root), runs everything on free ports in a temporary folder.
bench-patroni: $(VENV)/.bench-installed
	$(BIN)/python -m bench.patroni_drill $(BENCH_ARGS)

bench-lock: install
	$(BIN)/python -m pip install --quiet pip-tools
	cd bench && ../$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements.lock requirements.in

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage bench/.work $(METRICS_DIR)
