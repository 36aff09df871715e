# mxguard: `make run` starts the milter with the shipped config; `make test` runs every test.
# Each target installs what it needs first (Debian packages via scripts/system-deps.sh, a venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= contrib/mxguard.ini

.PHONY: run test unit fuzz bench lint docs system-deps test-system-deps fresh-check clean

system-deps:
	@sh scripts/system-deps.sh runtime

# The runtime and test packages in one check, so that one message names every missing one.
test-system-deps:
	@sh scripts/system-deps.sh test
	@sh scripts/sendmail-unpacked.sh /var/cache/mxguard-test/sendmail

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: system-deps $(STAMP)

run: system-deps $(STAMP)
	sh contrib/debian/add-user.sh
	$(BIN)/mxguard run -c $(CONFIG)

test: test-system-deps $(STAMP)
	$(BIN)/python -m pytest

unit: system-deps $(STAMP)
	$(BIN)/python -m pytest tests/unit

# A million mutated inputs through every parser's contract (tests/fuzz); make test runs the
# same contracts with a few hundred hypothesis examples each.
fuzz: system-deps $(STAMP)
	$(BIN)/python scripts/fuzz.py

bench: system-deps $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/cold_connect.py
	$(BIN)/python bench/check_costs.py

lint: system-deps $(STAMP)
	$(BIN)/ruff check milter tests bench
	$(BIN)/ruff format --check milter tests bench

docs: system-deps $(STAMP)
	$(BIN)/python -m mxguard.tools.docgen

# make test in fresh minbase Debian roots (SUITE=bookworm|trixie, both by default); as root.
fresh-check:
	@SUITE='$(SUITE)' bash scripts/fresh-check.sh

clean:
	rm -rf $(VENV) build milter/*.egg-info .pytest_cache
