# Quick start: `make train` (synthetic WSDDN run, CPU) and `make test`. Each sets up .venv/ first.
# `make test-latest` runs the suite in .venv-latest/, set up with the newest numpy, Pillow, scipy.
PY := .venv/bin/python
PY_LATEST := .venv-latest/bin/python
CONFIG ?= configs/Synthetic/wsddn_tiny.yaml

.PHONY: env env-latest train test test-latest
env:
	bash tools/setup_env.sh

env-latest:
	WSOD_D2_DEPS=latest bash tools/setup_env.sh

train: env
	$(PY) tools/train_net.py --config-file $(CONFIG) MODEL.DEVICE cpu

test: env
	$(PY) -m pytest -q tests

test-latest: env-latest
	$(PY_LATEST) -m pytest -q tests
