# Two commands set everything up on a fresh machine:
#   make demo   — install, start a local Prefect server with UI, serve the deployments, run a demonstration year
#   make test   — install (LibreOffice included) and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect-home

.PHONY: install demo down test lint bench libreoffice chromium axe portal clean

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing dependencies (pinned in constraints.txt) …"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt pip
	@# PIP_CONSTRAINT also reaches pip's isolated build environment (setuptools, wheel), which -c does not.
	@PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install -q --disable-pip-version-check \
	  -c constraints.txt -e ".[test]" \
	  > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

install: $(BIN)/.installed

demo: install
	@$(BIN)/styrkedja demo

down:
	@if [ -x $(BIN)/styrkedja ]; then $(BIN)/styrkedja down; else echo "nothing installed"; fi

# LibreOffice converts documents to PDF in the tests; hunspell with Debian's Swedish dictionary
# checks their language; poppler's pdftotext reads the PDFs' text; Carlito is Calibri's metrics.
libreoffice:
	@{ command -v soffice && command -v hunspell && command -v pdftotext && [ -f /usr/share/hunspell/sv_SE.dic ] && fc-list | grep -q Carlito; } \
	  >/dev/null 2>&1 || { \
	  echo "installing LibreOffice (writer, calc), hunspell (Swedish) and poppler-utils …"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    libreoffice-writer libreoffice-calc fonts-crosextra-carlito hunspell hunspell-sv poppler-utils >/dev/null; }

# The portal's browser tests: Debian's chromium (driven by Playwright from PyPI; never a downloaded
# browser build) and axe-core from the npm registry, pinned, in a folder the Makefile manages.
AXE_VERSION := 4.14.1
AXE_DIR := $(CURDIR)/.cache
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium …"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium >/dev/null; }

axe: $(AXE_DIR)/node_modules/axe-core/axe.min.js
$(AXE_DIR)/node_modules/axe-core/axe.min.js:
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends npm >/dev/null; }
	@mkdir -p $(AXE_DIR) && cd $(AXE_DIR) && npm install --no-audit --no-fund --silent axe-core@$(AXE_VERSION)

portal: install
	@$(BIN)/styrkedja portal

# Two workers, one per core (the suite is CPU-bound: a third worker only adds a Prefect server).
# Files go whole to one worker so module fixtures (rendered cycles) are built once.
TEST_WORKERS ?= 2
test: install libreoffice chromium axe
	@$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

lint: install
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

bench: install
	@$(BIN)/python -m bench.year

clean: down
	rm -rf var .prefect-home
