# The two commands a newcomer runs: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two test workers per core: the suite mostly waits on loopback I/O (about 25% CPU with one worker per core).
WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))

.PHONY: demo test lint bench perf bench-relay clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/uppzy-bot demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n $(WORKERS)

bench: $(STAMP)
	$(BIN)/python -m bench

perf: $(STAMP)
	$(BIN)/python -m bench --performance

clean:
	rm -rf $(VENV) build *.egg-info
