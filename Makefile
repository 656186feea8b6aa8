# Two commands for a newcomer: `make demo` and `make test`. Both (re)create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# On a machine without CUDA take the CPU build of torch first; `torch>=2.4` in
	# pyproject.toml is then already satisfied and pip pulls no CUDA wheels.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/deepfield demo

# The layers first (import-linter: the contracts in pyproject.toml), then the tests.
test: venv
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# One run of every speed figure, each against its plain PyTorch (and Keras 3) counterpart in the
# same process, on the best device present; all written to benchmarks/RESULTS.md (~15 min on 2 cores).
bench: venv
	test -d .bench-keras/keras || $(PY) -m pip install --quiet --target .bench-keras --no-deps keras absl-py namex optree ml-dtypes
	PYTHONPATH=.bench-keras KERAS_BACKEND=torch $(PY) benchmarks/bench_fit.py --write
	$(PY) benchmarks/bench_mc_dropout.py --write
	$(PY) benchmarks/bench_occlusion.py --write
	$(PY) benchmarks/bench_simulate.py --write

clean:
	rm -rf $(VENV) .bench-keras build src/*.egg-info .pytest_cache
