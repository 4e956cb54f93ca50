# Two commands: `make demo` (serve the built-in tiny model and stream a reply to a sample utterance)
# and `make test` (lint, types, the JavaScript checks' packages, the test suite). Both create .venv when
# it is missing. `make schema` rewrites the files generated from the protocol's classes.

VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PORT ?= 8765
BIN := $(VENV)/bin

.PHONY: install demo test lint bench schema js port-free espeak-ng

$(BIN)/aural: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[runtime,dev,frameworks,ray,redis]'
	touch $@

install: $(BIN)/aural

# A server already on $(PORT) would answer the demo in place of the one it starts: say so and stop.
port-free:
	$(if $(shell $(PYTHON) -c 'import socket; print(socket.socket().connect_ex(("127.0.0.1", $(PORT))) == 0 or "")'),\
	$(error port $(PORT) is taken by another server: stop it, or run make demo PORT=<a free port>))

demo: port-free install
	@$(BIN)/aural serve --model tiny --port $(PORT) --log-level warning & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT; \
	echo "Streaming examples/sample.wav to the tiny model (random weights: the reply is noise, streamed token by token)"; \
	$(BIN)/aural say examples/sample.wav --url ws://127.0.0.1:$(PORT)/v1/realtime --wait 60

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p aural.protocols -p aural.sdk -p aural.runtime -p aural.cli
	$(BIN)/mypy bench examples

# The JavaScript the tests run, pinned by lock files: the Node examples (examples/node: ws, openai) and the
# checks of the generated protocol files (tests/js: ajv, @asyncapi/parser). Without npm the note says so and
# their tests skip, unless AURAL_REQUIRE_JS=1 (CI) makes them fail.
JS_MODULES := examples/node/node_modules/.package-lock.json tests/js/node_modules/.package-lock.json

%/node_modules/.package-lock.json: %/package.json %/package-lock.json
	@if command -v npm >/dev/null; then cd $* && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the JavaScript tests will be skipped (apt-get install nodejs npm)"; fi

js: $(JS_MODULES)

# The tests speak with espeak-ng (tests/support/speech.py): without it, hundreds would fail one by one.
espeak-ng:
	$(if $(shell command -v espeak-ng),,$(error espeak-ng is missing, the tests need it: apt install espeak-ng))

test: espeak-ng lint js
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench.turns

schema: install
	$(BIN)/python -m aural.protocols.generate
