# One command to run the service, one to run the tests; both start from `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Shared libraries that the OpenCV build pulled in by mediapipe loads.
RUNTIME_APT := libgl1 libglib2.0-0
# The tests' local RTSP camera (tests/rtsp_server.py, run by the system python3), test clips
# (ffmpeg), the browser that Playwright drives for the web UI tests (chromium) and the tracer
# that tests/test_offline.py watches the server's connections with (strace); the load balancer and
# the monitoring that tests/test_scaling.py runs with deploy/'s configs (nginx; prometheus, with promtool).
TEST_APT := gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad gstreamer1.0-rtsp python3-gi ffmpeg chromium strace nginx prometheus

# Every Python package is installed from a lock file, at the exact version and with the sha256
# hashes recorded there: requirements.lock for `make install` (pyproject's dependencies and the
# setuptools that installs streamer itself), requirements-test.lock for `make test` (the same
# pins plus the `test` extra). `make lock` writes both again from pyproject.toml with pip-tools,
# keeping every pin that still fits; `make lock LOCK_ARGS=--upgrade` (or `LOCK_ARGS="-P onnx"`)
# moves to newer releases. It takes a few minutes: pip-tools hashes every file (one per platform)
# of every pinned release.
LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
LOCK_VENV := .cache/pip-tools
LOCK_TOOLS := pip==26.3 pip-tools==7.6.2
# The locks name packages and hashes only, never this machine's package indexes.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock  (pip-compile of $(LOCK_TOOLS), options in the Makefile)" \
  $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
  --build-deps-for editable --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

.PHONY: install run test lock bench-accuracy bench-load clean

install: $(VENV)/.installed

# streamer itself goes in without build isolation, so that its build backend comes from the lock too.
# streamer.offline writes matplotlib's font list into the venv now, not into the home folder at run time.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@$(MAKE) --no-print-directory apt PACKAGES="$(RUNTIME_APT)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m streamer.models
	$(BIN)/python -m streamer.offline
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed $(TEST_LOCK)
	$(BIN)/pip install --quiet --require-hashes -r $(TEST_LOCK)
	touch $@

lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) --extra test --constraint $(LOCK) --output-file $(TEST_LOCK) pyproject.toml

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet $(LOCK_TOOLS)

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

# Still-image API under 20, 50 and 100 clients at 1080p, ~25 minutes (README, "Still-image throughput");
# it runs the server with the tests' runner, so it needs their packages.
bench-load: $(VENV)/.installed-test
	$(BIN)/python bench/load.py --seconds 15 --warmup 3 --runs 3 --restart --quiet 15 --retries 2

clean:
	rm -rf $(VENV) *.egg-info
