# The two commands: `make demo` runs the main job end to end, `make test` runs the tests.
# Both create .venv first when it is missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.treum-installed
export TREUM_HOME ?= $(CURDIR)/.treum

.PHONY: demo test test-slow test-services bench env clean

$(STAMP): pyproject.toml tests/example_plugin/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, exactly these versions: pip takes them from this machine's disk,
	# and PyPI's torchvision does not import beside any other torch here
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q -e tests/example_plugin
	touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/treum demo

# everything but the quality floors on real data and Ray Serve booted for real (marked slow: `make test-slow`, run in CI)
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# the registry tests against PostgreSQL and the cache tests against Redis
test-services: $(STAMP)
	TREUM_TEST_PG_URL=$${TREUM_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
	TREUM_TEST_REDIS_URL=$${TREUM_TEST_REDIS_URL:-redis://127.0.0.1:6379/15} \
	$(PY) -m pytest -q -m "postgres or redis"

bench: $(STAMP)
	$(PY) bench/walk_forward.py
	$(PY) bench/serve_latency.py

clean:
	rm -rf $(VENV) .treum
