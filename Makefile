# Two commands do all the set-up: `make demo` runs the pipeline, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dagster dev and dagster-dbt look for their executables on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test browser dev sandbox lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	$(BIN)/switchyard prepare
	touch $(STAMP)

# The demo and `make dev` choose the local channel sandbox explicitly; a run without
# SWITCHYARD_CHANNELS set stops instead of "sending" to nowhere.
demo: $(STAMP)
	SWITCHYARD_CHANNELS=sandbox $(BIN)/switchyard demo $(ARGS)

# Two workers (pytest-xdist): most tests wait on dbt, Dagster or a sandbox more than they
# compute, so the second core was idle but for the Spark build. A file's tests share a worker
# (their module fixtures are built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

# The preference-center test drives headless Chromium: Debian's package (Playwright's own
# browser download cannot be reached from everywhere). Only the tests need it.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		  --no-install-recommends chromium; } || \
		{ echo "install Chromium (Debian: apt-get install chromium) and run make again" >&2; exit 1; }

dev: $(STAMP)
	mkdir -p var/dagster_home && cp orchestration/dagster.yaml var/dagster_home/dagster.yaml
	SWITCHYARD_CHANNELS=sandbox DAGSTER_HOME=$(CURDIR)/var/dagster_home \
		$(BIN)/dagster dev -w workspace.yaml

sandbox: $(STAMP)
	$(BIN)/switchyard sandbox

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy activations orchestration sandbox switchyard intake

clean:
	rm -rf var target logs $(VENV)
