# The README's two commands:
#   make demo   set up, then run real procServ + EPICS soft IOCs with consrv in front
#   make test   set up, then run the same checks CI runs (ruff, mypy --strict, pytest)
# Both install what they need: Debian packages (as root, or through sudo) and a venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := procserv openssh-client systemd nodejs prometheus curl dropbear-bin putty-tools \
                chromium chromium-driver nginx
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test stress bench check lint typecheck pytest setup system-deps clean

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
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@echo "setting up $(VENV) (Python packages)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -q --upgrade pip
	$(BIN)/pip install -q -q -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
