# The two commands of README.rst: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test venv bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/circusd examples/demo.ini

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Side-by-side benchmark of our circusd against circus 0.19.0 and supervisor
# 4.3.0 (benchmarks/README.md). The peers' venvs live outside the repo, in
# $(PEERS); extra peerbench flags go in BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--reps 1 --ns 10,20 --main-n 20 --idle-seconds 2"
PEERS ?= $(or $(PEERBENCH_PEERS),$(or $(TMPDIR),/tmp)/peers)

# Ours is measured installed as the peers are (from this tree, not editable, byte-compiled), in
# $(PEERS)/ours: an editable install adds its finder's imports to every interpreter's start.
bench: $(STAMP)
	PEERS='$(PEERS)' bash benchmarks/setup_peers.sh
	test -x '$(PEERS)/ours/bin/python' || $(PYTHON) -m venv '$(PEERS)/ours'
	'$(PEERS)/ours/bin/python' -m pip install --quiet .
	'$(PEERS)/ours/bin/python' -m pip install --quiet --force-reinstall --no-deps .
	PEERBENCH_PEERS='$(PEERS)' '$(PEERS)/bench/bin/python' benchmarks/peerbench.py run \
	    --ours-venv '$(PEERS)/ours' \
	    --out-json benchmarks/results/results-ours.json \
	    --out-md benchmarks/results/results-ours.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
