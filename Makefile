# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` needs only the base dependencies: its own, lighter stamp.
DEMO_STAMP := $(VENV)/.installed-base
SCHEMAS := ../shared/kafka-protocol
LINT_PATHS := $(wildcard aioshare tests tools benchmarks examples)
# Apache Kafka's jars (real-Kafka tests, Java drivers, benchmarks): resolved once by Maven, git-ignored.
export AIOSHARE_KAFKA_CACHE ?= $(CURDIR)/.cache/kafka
KAFKA_VERSIONS := 4.2.2 4.4.0

.PHONY: demo test lint typecheck unit generate check-generated kafka-jars chromium bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/aioshare demo

test: $(STAMP) check-generated lint typecheck kafka-jars chromium unit

# The web console's page tests drive Debian's Chromium (no browser download). Under CI a missing
# one is installed; elsewhere those tests skip and say what to install.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ -n "$$CI" ]; then apt-get update -q && apt-get install -y -q --no-install-recommends chromium; \
	  else echo "chromium: $(CHROMIUM) not found, the browser tests will skip (apt-get install chromium)"; fi; fi

# Resolving Kafka first makes a missing JDK or Maven one clear line; under CI it fails the run,
# elsewhere the real-Kafka tests skip and say what to install.
kafka-jars: $(STAMP)
	@for v in $(KAFKA_VERSIONS); do $(BIN)/aioshare kafka resolve --version $$v || \
	  { if [ -n "$$CI" ]; then exit 1; else echo "kafka-jars: Kafka $$v unavailable, real-Kafka tests will skip"; fi; }; done

# The committed codec must be exactly what Kafka's schemas produce; skipped where the
# schemas are not checked out beside the repository.
check-generated: $(STAMP)
	@if [ -d $(SCHEMAS) ]; then $(BIN)/python tools/generate_protocol.py $(SCHEMAS) --check; \
	else echo "check-generated: $(SCHEMAS) not found, skipped"; fi

generate: $(STAMP)
	$(BIN)/python tools/generate_protocol.py $(SCHEMAS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy --strict aioshare

unit: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .cache
