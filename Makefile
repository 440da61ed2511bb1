# The two commands: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= results

.PHONY: run test nightly report doctor proto lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: every registered spike, full profile, documents into results/
run: $(STAMP)
	$(BIN)/spike run all --out $(OUT)

## test: the test suite, in parallel
test: $(STAMP)
	$(BIN)/python -m pytest -n auto -q

## nightly: all spikes, full profile, then compare against the runs stored before
nightly: $(STAMP)
	@base=$$(mktemp -d); cp $(OUT)/runs/*.json $$base/ 2>/dev/null || true; \
	status=0; $(BIN)/spike run all --out $(OUT) || status=$$?; \
	$(BIN)/spike compare $$base $(OUT)/runs --only-changed || status=$$?; \
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
	rm -rf $(VENV) build *.egg-info .pytest_cache
