# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` needs only the base dependencies: its own, lighter stamp.
DEMO_STAMP := $(VENV)/.installed-base
SCHEMAS := ../shared/kafka-protocol
LINT_PATHS := $(wildcard aioshare tests tools benchmarks examples setup.py)
# Apache Kafka's jars (real-Kafka tests, Java drivers, benchmarks): resolved once by Maven, git-ignored.
export AIOSHARE_KAFKA_CACHE ?= $(CURDIR)/.cache/kafka
KAFKA_VERSIONS := 4.2.2 4.4.0
# The codec's schemas that ../shared/kafka-protocol lacks are read from this jar.
CLIENTS_JAR := $(AIOSHARE_KAFKA_CACHE)/4.4.0/lib/kafka-clients-4.4.0.jar

.PHONY: demo test compiled lint typecheck unit generate check-generated kafka-jars chromium bench clean

# The install compiles the per-record path with mypyc (setup.py; the list: aioshare/_compiled.py)
# into extensions beside the sources, which import in their place: COMPILED_STAMP rebuilds them
# when a compiled module changes, so an edit is never shadowed by a stale build.
COMPILED_STAMP := $(VENV)/.compiled
COMPILED_SOURCES := setup.py aioshare/_compiled.py $(shell sed -n 's/^    "\(aioshare\.[a-z_.]*\)",$$/\1/p' aioshare/_compiled.py | tr . / | sed 's/$$/.py/')

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(DEMO_STAMP) $(COMPILED_STAMP)

$(DEMO_STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP) $(COMPILED_STAMP)

$(COMPILED_STAMP): $(COMPILED_SOURCES) | $(DEMO_STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(COMPILED_STAMP)

compiled: $(COMPILED_STAMP)

demo: $(DEMO_STAMP) $(COMPILED_STAMP)
	$(BIN)/aioshare demo

test: $(STAMP) $(COMPILED_STAMP) lint typecheck kafka-jars check-generated chromium unit

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
# schemas are not checked out beside the repository. The few schemas they lack come from
# kafka-clients' jar (resolved by kafka-jars, which `test` runs first): missing, it fails under
# CI and skips elsewhere.
check-generated: $(STAMP)
	@if [ ! -d $(SCHEMAS) ]; then echo "check-generated: $(SCHEMAS) not found, skipped"; \
	elif [ -f $(CLIENTS_JAR) ]; then $(BIN)/python tools/generate_protocol.py $(SCHEMAS) --jar $(CLIENTS_JAR) --check; \
	elif [ -n "$$CI" ]; then echo "check-generated: $(CLIENTS_JAR) not found (make kafka-jars)"; exit 1; \
	else echo "check-generated: $(CLIENTS_JAR) not found, skipped (make kafka-jars resolves it)"; fi

generate: $(STAMP)
	$(BIN)/python tools/generate_protocol.py $(SCHEMAS) --jar $(CLIENTS_JAR)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy --strict aioshare benchmarks

unit: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .cache
