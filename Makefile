# The README's two commands: `make demo` and `make test`. Both create .venv if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test test-fast lint bench docs clean

$(PY):
	python3 -m venv $(VENV)

# Stamps re-run the install when the project's dependencies change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e '.[experiments]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e '.[dev,experiments]'
	touch $@ $(VENV)/.installed

# The main job: MNIST-5k without and with dropout; prints the table and the report's path.
demo: $(VENV)/.installed
	$(VENV)/bin/dropkit compare

test: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks docs
	$(PY) -m mypy
	$(PY) -m pytest -q

# The library's tests without the slow ones (training runs, subprocesses, compilers):
# about a minute, for the edit-test loop. `make test` and CI run everything.
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks docs
	$(PY) -m mypy

# The documentation site, strictly (-W -n: a warning or a broken reference fails), offline.
# tests/test_docs.py builds it the same way in `make test`.
docs: $(VENV)/.installed-dev
	$(PY) -m sphinx -q -W --keep-going -n -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_mlp_step.py
	$(PY) benchmarks/bench_mc_predict.py
	$(PY) benchmarks/bench_checkpoint.py
	$(PY) benchmarks/bench_variational_rnn.py
	$(PY) benchmarks/bench_score_pool.py
	$(PY) benchmarks/bench_recipes.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
