# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCHEMAS := ../shared/kafka-protocol
LINT_PATHS := $(wildcard aioshare tests tools benchmarks examples)

.PHONY: demo test lint typecheck unit generate check-generated bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aioshare demo

test: $(STAMP) check-generated lint typecheck unit

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
	rm -rf $(VENV) build *.egg-info
