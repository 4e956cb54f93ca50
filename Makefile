# Two commands: `make demo` (serve the built-in tiny model and stream a reply to a sample utterance)
# and `make test` (lint, types, the test suite). Both create .venv when it is missing.

VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PORT ?= 8765
BIN := $(VENV)/bin

.PHONY: install demo test lint bench schema

$(BIN)/aural: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[runtime,dev,frameworks]'
	touch $@

install: $(BIN)/aural

demo: install
	@$(BIN)/aural serve --model tiny --port $(PORT) --log-level warning & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT; \
	echo "Streaming examples/sample.wav to the tiny model (random weights: the reply is noise, streamed token by token)"; \
	$(BIN)/aural say examples/sample.wav --url ws://127.0.0.1:$(PORT)/v1/realtime --wait 60

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p aural.protocols -p aural.sdk -p aural.runtime -p aural.cli
	$(BIN)/mypy bench examples

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench.turns

schema: install
	$(BIN)/python -m aural.protocols.schema
