# Two commands from a fresh clone:
#   make book   set up, then build the site into _build/html (0 warnings allowed)
#   make test   set up, build the site and its PDF, then run every test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore::DeprecationWarning:jupyter_client.connect
# The build's own tools (code/booktools: export, execute, cache, pdf, latest, bench); not part of bnbook.
BOOKTOOLS := PYTHONPATH=$(abspath code) $(BIN)/python -m booktools

.PHONY: book test pdf latest rounding bench notebooks setup data fresh-cache clean help

help:
	@echo "make book       build the site into _build/html"
	@echo "make test       execute every chapter under nbmake, build the site and the PDF, run all tests"
	@echo "make pdf        the whole book as one PDF, from the execution cache ($(PDF))"
	@echo "make latest     every chapter with the newest TensorFlow, Keras, NumPy...: what changed"
	@echo "make rounding   execute every chapter again with other floating-point rounding (oneDNN off)"
	@echo "make bench      time every chapter cold, with its peak memory (book/_static/benchmark.csv)"
	@echo "make notebooks  regenerate the .ipynb beside each chapter (for Colab and Binder)"
	@echo "make clean  remove the build (keeps .venv)"

setup: $(STAMP) data

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(call kernel_config,$(VENV))
	touch $(STAMP)

# TensorFlow writes C++ start-up notices straight to file descriptor 2;
# keep them in the kernel's log instead of every notebook's first output.
define kernel_config
mkdir -p $(1)/etc/ipython
echo "c.IPKernelApp.capture_fd_output = False" > $(1)/etc/ipython/ipython_kernel_config.py
endef

# Debian packages, installed when we are root and apt is there: Fashion-MNIST
# (otherwise the loader's other sources: BNBOOK_DATA_DIR, the Keras cache, a
# download) and, for the browser test of the built site, Chromium.
APT_PACKAGES := $(if $(wildcard /usr/share/datasets/fashion-mnist),,dataset-fashion-mnist) \
                $(if $(wildcard /usr/bin/chromium),,chromium)
data: $(STAMP)
	@if [ -n "$(strip $(APT_PACKAGES))" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); fi
	$(BIN)/python -m bnbook.data

# Jupyter Book re-executes a chapter only when its code cells change. A change
# of the pinned dependencies or of bnbook must re-execute everything as well:
# the cache is kept only if _build/.deps-hash records today's dependencies
# (booktools.execute.fresh_cache; CI restores the hash with the cache).
fresh-cache: $(STAMP)
	@$(BOOKTOOLS) fresh-cache

# Jupyter Book executes chapters one at a time; booktools execute first runs
# those the cache lacks two at a time (one per core) and caches their outputs.
book: setup fresh-cache
	$(BOOKTOOLS) execute
	$(BIN)/jupyter-book build . --builder html -n -W --keep-going
	@echo "The site is in $(abspath _build/html)/index.html"

# The whole book as one PDF, with the executed outputs, from the same execution
# cache (nothing executes that make book would not): a single-page build,
# printed by Debian's Chromium (booktools/pdf.py says why not pdflatex or
# Jupyter Book's pdfhtml). It lands beside the site, which links to it.
PDF := _build/html/batch-normalization-tested.pdf
pdf: setup fresh-cache
	$(BOOKTOOLS) execute
	$(BIN)/jupyter-book build . --builder singlehtml -n -W --keep-going
	$(BOOKTOOLS) pdf

# Pins keep the build reproducible and hide the day a new release changes a
# result. make latest executes the chapters (CHAPTERS="a b" for some) in
# .venv-latest: requirements.txt with the pins of its "The computations." group
# lifted, upgraded to the newest releases each time; it compares every glued
# value and verdict with the pinned build's execution cache, completed first.
# Report, values and notebooks: _build/latest/ (report.md). Fails if a chapter raised.
LATEST := .venv-latest
latest: setup fresh-cache
	$(BOOKTOOLS) execute
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(BOOKTOOLS) relaxed > $(LATEST)/requirements.txt
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
	  -r $(LATEST)/requirements.txt
	$(LATEST)/bin/python -m pip install --quiet --no-deps -e .
	$(call kernel_config,$(LATEST))
	rm -rf _build/latest
	PATH=$(abspath $(LATEST)/bin):$$PATH PYTHONPATH=$(abspath code) \
	  $(LATEST)/bin/python -m booktools latest _build/latest $(CHAPTERS)

# Every chapter is executed once, by nbmake, in parallel with the unit tests
# (and the Binder emulation, tests/test_binder.py). nbmake collects only
# *.ipynb and skips paths containing _build, so the chapters of _toc.yml are
# exported to a temporary folder; their executed outputs then fill the
# build's cache, and the site and the PDF are built from them without
# executing anything twice. Last, the checks of the built site and the PDF.
SITE_TESTS := tests/test_site.py tests/test_browser.py tests/test_download.py tests/test_pdf.py
test: setup fresh-cache
	nbdir=$$(mktemp -d); trap 'rm -rf "$$nbdir"' EXIT; \
	$(BOOKTOOLS) export "$$nbdir"; \
	$(BIN)/python -m pytest tests "$$nbdir" $(SITE_TESTS:%=--ignore=%) \
	  --nbmake --overwrite --nbmake-timeout=900 -n 2 --dist loadfile; \
	$(BOOKTOOLS) cache "$$nbdir"
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory pdf
	$(BIN)/python -m pytest $(SITE_TESTS) -n 2 --dist load
	$(MAKE) --no-print-directory rounding

# A verdict must not hang on floating-point rounding: another processor rounds
# differently (a placement verdict of three seeds once flipped that way). Every
# chapter runs again with TensorFlow's oneDNN kernels off, which changes the
# rounding of nearly every operation, and every hidden assertion must still hold.
# (tests/conftest.py, named first, checks that every chapter was collected.)
rounding: setup
	nbdir=$$(mktemp -d); trap 'rm -rf "$$nbdir"' EXIT; \
	$(BOOKTOOLS) export "$$nbdir"; \
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/python -m pytest tests/conftest.py "$$nbdir" \
	  --nbmake --nbmake-timeout=900 -n 2 --dist loadfile -p no:cacheprovider

bench: setup
	$(BOOKTOOLS) bench

# Colab opens only .ipynb: every chapter has a plain (unexecuted) copy beside it,
# generated from the .md and checked to be in sync by tests/test_chapters.py.
notebooks: setup
	$(BOOKTOOLS) export book

clean:
	rm -rf _build
