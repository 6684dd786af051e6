# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv first.
# torch/torchvision are pinned and installed before the package: on these machines they come
# from local disk, while an unpinned torch would pull a multi-GB CUDA build from the registry.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BROWSER := $(VENV)/.browser
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' $(TORCH)
	touch $(STAMP)

# The studio's real-browser test needs Chromium and chromedriver from the OS packages. They are
# installed when this machine allows it (root with apt-get); otherwise that test says so and skips.
$(BROWSER): $(STAMP)
	@command -v chromedriver >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
	      || echo "note: could not install chromium/chromium-driver; the real-browser test will skip"; \
	  else echo "note: no root apt-get here; the real-browser test will skip"; fi; }
	touch $(BROWSER)

demo: $(STAMP)
	$(VENV)/bin/defectgen demo --out demo_run

test: $(STAMP) $(BROWSER)
	$(PY) -m pytest -q --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/read_speed.py

clean:
	rm -rf $(VENV) demo_run .pytest_cache
