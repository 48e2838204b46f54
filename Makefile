# Quick start: `make train` (synthetic WSDDN run, CPU) and `make test`. Each sets up .venv/ first.
PY := .venv/bin/python
CONFIG ?= configs/Synthetic/wsddn_tiny.yaml

.PHONY: env train test
env:
	bash tools/setup_env.sh

train: env
	$(PY) tools/train_net.py --config-file $(CONFIG) MODEL.DEVICE cpu

test: env
	$(PY) -m pytest -q tests
