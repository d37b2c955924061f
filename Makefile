# The README's two commands:
#   make demo   set up, then run real procServ + EPICS soft IOCs with consrv in front
#   make test   set up, then run the same checks CI runs (ruff, mypy --strict, pytest)
# Both install what they need: Debian packages (as root, or through sudo) and a venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := procserv openssh-client systemd nodejs prometheus curl dropbear-bin putty-tools \
                chromium chromium-driver nginx asciinema
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test stress bench check lint typecheck pytest setup system-deps clean lock relock

demo: setup
	$(BIN)/python -m consrv.demo

test: setup check

# The suites with real processes, STRESS times in a row, each in a new random order.
STRESS ?= 5
stress: setup
	tests/stress.sh $(STRESS)

# Benchmarks side by side with sshd+socat and conserver (docs/performance.md).
bench: setup
	bench/run

check: lint typecheck pytest

lint:
	$(BIN)/ruff check consrv tests bench
	$(BIN)/ruff format --check consrv tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

setup: system-deps $(VENV)/.installed

# Install the Debian packages only when a program is missing (apt-get update once).
system-deps:
	@missing=""; \
	command -v procServ >/dev/null || missing="$$missing procserv"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v dbclient >/dev/null || missing="$$missing dropbear-bin"; \
	command -v plink >/dev/null || missing="$$missing putty-tools"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v asciinema >/dev/null || missing="$$missing asciinema"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# Exactly the locked set (requirements/*.txt, hashes checked), then consrv itself with
# the locked setuptools: nothing is resolved at install time (docs/dependencies.md).
LOCK     := requirements/test.txt
$(VENV)/.installed: pyproject.toml $(LOCK)
	@echo "setting up $(VENV) (Python packages from $(LOCK))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q -q --no-deps --no-build-isolation -e . >$(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; exit 1; }
	$(BIN)/pip check >/dev/null
	@touch $@

# Re-resolve the lock to the newest versions pyproject.toml allows, install them, and
# run the whole check on them (docs/dependencies.md, "Upgrading dependencies").
PIP_COMPILE := $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
               --no-emit-find-links --no-emit-index-url --no-emit-trusted-host
lock: setup
	$(PIP_COMPILE) --upgrade -o requirements/runtime.txt pyproject.toml
	$(PIP_COMPILE) --upgrade --extra test -o requirements/test.txt pyproject.toml requirements/test.in
	rm -f $(VENV)/.installed
	$(MAKE) test
	@git diff --stat -- requirements/ || true

# The same without --upgrade: after a change to pyproject.toml, add what is new and keep
# every other pin.
relock: setup
	$(PIP_COMPILE) -o requirements/runtime.txt pyproject.toml
	$(PIP_COMPILE) --extra test -o requirements/test.txt pyproject.toml requirements/test.in
	rm -f $(VENV)/.installed
	$(MAKE) setup

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
