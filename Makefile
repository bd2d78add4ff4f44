# Two entry points: `make draw PROMPT="..."` and `make test`. Both create .venv on first use.
# `make test-fast` is for editing: the unit tests only (no lint, real bot, Redis or end-to-end run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROMPT ?= an image of the music
DRAW_ARGS ?=
STAMP := $(VENV)/.installed

CONFIG ?= config.toml

.PHONY: draw bot test test-fast lint bench messages

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

draw: $(STAMP)
	$(BIN)/pseudo-dalle draw "$(PROMPT)" $(DRAW_ARGS)

bot: $(STAMP)
	$(BIN)/pseudo-dalle bot --config "$(CONFIG)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e and not redis and not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.bench_engine

# After changing a message the bot says: refresh the catalogs, then translate what is new.
messages: $(STAMP)
	$(BIN)/python -m bot.ops.messages
