# One command to run the service, one to run the tests; both start from `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Shared libraries that the OpenCV build pulled in by mediapipe loads.
RUNTIME_APT := libgl1 libglib2.0-0
# The tests' local RTSP camera (tests/rtsp_server.py, run by the system python3), test clips
# (ffmpeg) and the browser that Playwright drives for the web UI tests (chromium).
TEST_APT := gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad gstreamer1.0-rtsp python3-gi ffmpeg chromium

.PHONY: install run test bench-accuracy bench-load clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory apt PACKAGES="$(RUNTIME_APT)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	$(BIN)/python -m streamer.models
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

# Still-image API under 20, 50 and 100 clients at 1080p, ~25 minutes (README, "Still-image throughput");
# it runs the server with the tests' runner, so it needs their packages.
bench-load: $(VENV)/.installed-test
	$(BIN)/python bench/load.py --seconds 15 --warmup 3 --runs 3 --restart --quiet 15 --retries 2

clean:
	rm -rf $(VENV) *.egg-info
