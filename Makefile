# One command to run the service, one to run the tests; both start from `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Shared libraries that the OpenCV build pulled in by mediapipe loads.
RUNTIME_APT := libgl1 libglib2.0-0
TEST_APT :=

.PHONY: install run test bench-accuracy clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory apt PACKAGES="$(RUNTIME_APT)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Installs the Debian packages in PACKAGES that are missing (apt-get only when one is).
apt:
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/streamer serve

test: $(VENV)/.installed-test
	@$(MAKE) --no-print-directory apt PACKAGES="$(TEST_APT)"
	$(BIN)/python -m pytest

bench-accuracy: install
	$(BIN)/python bench/accuracy.py --markdown

clean:
	rm -rf $(VENV) *.egg-info
