# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
REGIMEN_TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/regimen_test
export REGIMEN_TEST_DATABASE_URL

.PHONY: run test test-fast lint typecheck pytest screenshots bench bench-scale install clean

run: $(STAMP)
	$(BIN)/regimen migrate
	$(BIN)/regimen serve

test: lint typecheck pytest

# The unit tests alone: no database, no network, a few seconds.
test-fast: $(STAMP)
	$(BIN)/pytest tests/unit

# ruff, and the import contracts (pyproject.toml, [tool.importlinter]): web -> features -> core.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy service

pytest: $(STAMP)
	$(BIN)/pytest

# Benchmarks are not tests: they print ratios against a baseline measured in the same run,
# on SQLite and on the local PostgreSQL, into bench/results.json and one table (~35 minutes:
# each mail run sends 100,000 confirmations and twice 100,000 lessons, due at once and already
# queued, ~10 minutes apiece).
REGIMEN_BENCH_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/regimen_bench
bench: $(STAMP)
	$(BIN)/python bench/mail.py --mails 100000 --lessons 100000
	$(BIN)/python bench/mail.py --mails 100000 --lessons 100000 --database-url $(REGIMEN_BENCH_DATABASE_URL)
	$(BIN)/python bench/signup.py
	$(BIN)/python bench/signup.py --database-url $(REGIMEN_BENCH_DATABASE_URL)
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/report.py

# The author's numbers on 1,000,000 readers and 3,000,000 events, kept per day against counted
# from the raw rows (seeds once, ~3.5 minutes; bench/scale.py says how to run ten million).
REGIMEN_SCALE_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/regimen_scale
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py --database-url $(REGIMEN_SCALE_DATABASE_URL)

# axe-core for the browser tests (tests/browser), from the npm registry at the locked version.
AXE := tests/browser/node_modules/axe-core/axe.min.js
pytest: $(AXE)
$(AXE): tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

# The browser tour, writing its screenshots into docs/screenshots/ (the README shows them).
screenshots: $(STAMP) $(AXE)
	REGIMEN_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/browser/test_pages.py

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
