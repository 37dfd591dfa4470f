# The README's commands. `make serve` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser serve index test test-fast lint format eval bench clean

install: $(STAMP)

# torch first, pinned: pip takes the CPU build of 2.13.0 from the local wheel cache.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian's chromium for the browser tests (never `playwright install`: it downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

serve: install
	$(BIN)/python serve.py --host $(HOST) --port $(PORT)

index: install
	$(BIN)/python -m qa index

# The tests of the optional parts run here too, so their extras are installed for them: 'ray'
# (cluster builds, replicas) and 'bench' (the txtai peer). `make serve` never needs them.
TEST_STAMP := $(VENV)/.test-extras-stamp
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,bench]"
	touch $(TEST_STAMP)

test: install browser $(TEST_STAMP)
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not model and not browser and not slow and not ray"

lint: install
	$(BIN)/ruff check qa web tests bench serve.py
	$(BIN)/ruff format --check qa web tests bench serve.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff format qa web tests bench serve.py
	$(BIN)/ruff check --fix qa web tests bench serve.py

# The SciFact index is built once into .eval-cache/ and shared by the three modes.
EVAL_CACHE ?= .eval-cache
eval: install
	$(BIN)/python -m qa eval --questions eval/seeds_questions.jsonl
	$(BIN)/python -m qa eval --beir ../shared/data/scifact --mode dense --cache $(EVAL_CACHE)
	$(BIN)/python -m qa eval --beir ../shared/data/scifact --mode bm25 --cache $(EVAL_CACHE)
	$(BIN)/python -m qa eval --beir ../shared/data/scifact --mode hybrid --cache $(EVAL_CACHE)
	$(BIN)/python -m qa eval --xquad ../shared/data/xquad-en/xquad.en.json --cache $(EVAL_CACHE)

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache embeddings/CURRENT embeddings/generations
