# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format clean wheelhouse

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch and torchvision first, pinned: on these machines the pair comes from local disk.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fersearch demo

# The browser and compose-file tests need Debian's chromium and docker-compose.
SYSTEM_DEPS := /usr/bin/chromium /usr/bin/docker-compose

$(SYSTEM_DEPS):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium docker-compose; \
	else echo "install Debian's chromium and docker-compose for the browser and compose tests"; fi

test: $(STAMP) | $(SYSTEM_DEPS)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check fersearch tests bench
	$(VENV)/bin/ruff format --check fersearch tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format fersearch tests bench
	$(VENV)/bin/ruff check --fix fersearch tests bench

# Wheels of what the GPU check's machine lacks (it reaches no registry), carried there as .whl;
# see bench/wheelhouse.py and BENCHMARKS.md's GPU section.
wheelhouse: $(STAMP)
	$(PY) bench/wheelhouse.py --out .whl

clean:
	rm -rf $(VENV) .fersearch fersearch-demo
