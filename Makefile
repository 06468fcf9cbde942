# Two entry points, both from a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/cpc: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,notebook]'
	touch $(BIN)/cpc

venv: $(BIN)/cpc

data: venv
	$(BIN)/python -m cpc.data.prepare fashion_mnist --root data

run: data
	$(BIN)/cpc fit --config configs/fashion_mnist.yaml

test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest

.PHONY: venv data run test
