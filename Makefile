# minion: `make run` runs the whole service locally, `make test` runs the suite.
# Both set up what they need (a virtualenv in .venv with the pinned packages) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help run test test-fast bench package deploy lint clean

help:  ## this list of targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## (.*)/\1\t\2/' | \
		awk -F '\t' '{ printf "  make %-10s %s\n", $$1, $$2 }'

$(STAMP): requirements.txt requirements-dev.txt $(wildcard pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip<26.3'  # chalice 1.34 requires pip<26.3 (it drives pip to package)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@if [ -f pyproject.toml ]; then $(PY) -m pip install --quiet --no-deps -e .; fi
	@touch $(STAMP)

run: $(STAMP)  ## the service on loopback: API, AWS emulator, tick and worker loops
	$(PY) -m local.stack

test: lint  ## lint, then the whole suite, slow tests included
	$(PY) -m pytest -n 2 -q

test-fast: $(STAMP)  ## everything but the tests marked slow
	$(PY) -m pytest -n 2 -q -m "not slow"

bench: $(STAMP)  ## performance ratios (see bench/)
	$(PY) -m bench

package: $(STAMP)  ## build/sam.json (checked by cfn-lint) and build/deployment.zip, for the runtime of .chalice/config.json
	infra/package.sh

deploy: $(STAMP)  ## package, then deploy with your AWS credentials (docs/deploying.md)
	infra/deploy.sh

lint: $(STAMP)  ## ruff (lint and format) and mypy (strict on chalicelib/), as configured in pyproject.toml
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:  ## remove build output and test caches
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
