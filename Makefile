# Two commands from a fresh clone:
#   make book   set up, then build the site into _build/html (0 warnings allowed)
#   make test   set up, build the site, then run every test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore::DeprecationWarning:jupyter_client.connect

.PHONY: book test setup data unit clean help

help:
	@echo "make book   build the site into _build/html"
	@echo "make test   build the site and run all tests"
	@echo "make clean  remove the build (keeps .venv)"

setup: $(STAMP) data

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# TensorFlow writes C++ start-up notices straight to file descriptor 2;
	@# keep them in the kernel's log instead of every notebook's first output.
	mkdir -p $(VENV)/etc/ipython
	echo "c.IPKernelApp.capture_fd_output = False" > $(VENV)/etc/ipython/ipython_kernel_config.py
	touch $(STAMP)

# Fashion-MNIST: Debian's package when we are root and apt is there; otherwise
# the loader's other sources (BNBOOK_DATA_DIR, the Keras cache, a download).
data: $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi
	$(BIN)/python -m bnbook.data

book: setup
	$(BIN)/jupyter-book build . --builder html -n -W --keep-going
	@echo "The site is in $(abspath _build/html)/index.html"

# Every chapter is executed once, by nbmake, in parallel with the unit tests.
# nbmake collects only *.ipynb and skips paths containing _build, so the
# chapters of _toc.yml are exported to a temporary folder; their executed
# outputs then fill the build's cache, and the site is built from them
# without executing anything twice. Last, the checks of the built site.
test: setup
	nbdir=$$(mktemp -d); trap 'rm -rf "$$nbdir"' EXIT; \
	$(BIN)/python tests/book_layout.py export "$$nbdir"; \
	$(BIN)/python -m pytest tests "$$nbdir" --ignore=tests/test_site.py \
	  --nbmake --overwrite --nbmake-timeout=900 -n 2 --dist loadfile; \
	$(BIN)/python tests/book_layout.py cache "$$nbdir"
	$(MAKE) --no-print-directory book
	$(BIN)/python -m pytest tests/test_site.py

clean:
	rm -rf _build
