# The README's commands. `make demo` and `make test` install everything they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Two pytest processes: most end-to-end tests wait on child processes, so two halve the wall
# time even on two cores (18:44 -> 11:51 on a 2-core VM). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

.PHONY: install demo test lint bench clean

install: $(STAMP)

# The browser test drives Debian's Chromium (nothing is downloaded at test time).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: a bare `torch` requirement would pull several GB of CUDA wheels.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/adamtune demo

test: install $(CHROMIUM)
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check tuner api workers adamtune tests benchmarks
	$(VENV)/bin/mypy tuner

bench: install
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/population.py
	$(PY) benchmarks/quality.py --quick

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
