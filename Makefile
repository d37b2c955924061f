# The README's two commands:
#   make demo   set up, then run real procServ + EPICS soft IOCs with consrv in front
#   make test   set up, then run the same checks CI runs (ruff, mypy --strict, pytest)
# Both install what they need: Debian packages (as root, or through sudo) and a venv.
# The demo only what it uses (procServ, an SSH client; the runtime and a soft IOC from
# requirements/demo.txt); the tests the whole CI toolbox. No service a package brings
# is started (tools/system-deps).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_APT_PACKAGES := procserv openssh-client
TEST_APT_PACKAGES := systemd nodejs prometheus curl dropbear-bin putty-tools \
                     chromium chromium-driver nginx slapd ldap-utils libnss-wrapper \
                     rpm cpio python3.11 python3-apt asciinema sssd-ldap libnss-sss
APT_PACKAGES := $(DEMO_APT_PACKAGES) $(TEST_APT_PACKAGES)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test stress bench check lint typecheck pytest setup system-deps demo-deps clean \
        lock relock package

demo: demo-deps $(VENV)/.demo-installed
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

# The .deb (Debian 12) and .rpm (RHEL 8/9) in build/packages/, consrv-pva beside them
# (docs/packaging.md).
package: setup
	packaging/build.sh

lint:
	$(BIN)/ruff check consrv tests bench
	$(BIN)/ruff format --check consrv tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

setup: system-deps $(VENV)/.installed

# Install the Debian packages only when a program is missing (apt-get update once),
# with no service started (tools/system-deps; `--missing` prints what it would install).
system-deps:
	@tools/system-deps test

demo-deps:
	@tools/system-deps demo

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
	@touch $@ $(VENV)/.demo-installed

# The demo's venv: the runtime and the soft IOC only (requirements/demo.txt); a venv
# with the test lock (a superset) already has it.
DEMO_LOCK := requirements/demo.txt
$(VENV)/.demo-installed: pyproject.toml $(DEMO_LOCK)
	@if [ $(VENV)/.installed -nt $(DEMO_LOCK) ] && [ $(VENV)/.installed -nt pyproject.toml ]; \
	then touch $@; exit 0; fi; \
	echo "setting up $(VENV) (Python packages from $(DEMO_LOCK))"; set -e; \
	$(PYTHON) -m venv $(VENV); \
	$(BIN)/pip install -q -q --require-hashes --no-deps -r $(DEMO_LOCK); \
	$(BIN)/pip install -q -q --no-deps --no-build-isolation -e . >$(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; exit 1; }; \
	$(BIN)/pip check >/dev/null; \
	touch $@

# Re-resolve the lock to the newest versions pyproject.toml allows, install them, and
# run the whole check on them (docs/dependencies.md, "Upgrading dependencies").
PIP_COMPILE := $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
               --no-emit-find-links --no-emit-index-url --no-emit-trusted-host
# requirements/pva.txt: the runtime and the pva extra (the consrv-pva package), at the
# test lock's versions (the ones the suite ran): the test lock is its starting point.
define PVA_LOCK
cp requirements/test.txt requirements/pva.txt
$(PIP_COMPILE) --extra pva -o requirements/pva.txt pyproject.toml requirements/build.in
endef
# pip-compile comes from the venv; a pyproject.toml with a dependency the venv lacks must
# not stop a re-lock (setup's `pip check` would), so setup runs only when there is none.
lock:
	@[ -x $(BIN)/pip-compile ] || $(MAKE) setup
	$(PIP_COMPILE) --upgrade -o requirements/runtime.txt pyproject.toml requirements/build.in
	cp requirements/runtime.txt requirements/demo.txt  # the same pins, and the ioc extra
	$(PIP_COMPILE) --extra ioc -o requirements/demo.txt pyproject.toml requirements/build.in
	$(PIP_COMPILE) --upgrade --extra test -o requirements/test.txt pyproject.toml requirements/test.in
	$(PVA_LOCK)
	rm -f $(VENV)/.installed $(VENV)/.demo-installed
	$(MAKE) test
	@git diff --stat -- requirements/ || true

# The same without --upgrade: after a change to pyproject.toml, add what is new and keep
# every other pin.
relock:
	@[ -x $(BIN)/pip-compile ] || $(MAKE) setup
	$(PIP_COMPILE) -o requirements/runtime.txt pyproject.toml requirements/build.in
	$(PIP_COMPILE) --extra ioc -o requirements/demo.txt pyproject.toml requirements/build.in
	$(PIP_COMPILE) --extra test -o requirements/test.txt pyproject.toml requirements/test.in
	$(PVA_LOCK)
	rm -f $(VENV)/.installed $(VENV)/.demo-installed
	$(MAKE) setup

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
