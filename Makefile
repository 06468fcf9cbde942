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

# The GPU check (benchmarks/gpu_check.sh): `make gpu-wheels` here (needs the internet) puts the
# wheels a bare GPU machine lacks (cp312, manylinux x86_64, the venv's versions) and the
# Fashion-MNIST .gz files into .gpu-wheels/ (~50 MB, git-ignored); carry that folder along
# and run `make gpu-check` there.
GPU_PKGS := faiss-cpu jsonargparse docstring-parser typeshed-client litdata
gpu-wheels: venv
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu-wheels \
		$$($(BIN)/pip freeze | grep -i -E '^($(shell echo $(GPU_PKGS) | tr ' -' '|.'))==')
	mkdir -p .gpu-wheels/fashion-mnist
	for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
		if [ -f /usr/share/datasets/fashion-mnist/$$f.gz ]; then cp /usr/share/datasets/fashion-mnist/$$f.gz .gpu-wheels/fashion-mnist/; \
		else gzip -c data/FashionMNIST/raw/$$f > .gpu-wheels/fashion-mnist/$$f.gz; fi; done
	du -sh .gpu-wheels

gpu-check:
	PY=$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) benchmarks/gpu_check.sh

.PHONY: venv data run test gpu-wheels gpu-check
