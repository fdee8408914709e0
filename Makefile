# One command to set up and run the demo, one to set up and run the tests.
#   make demo   # evaluate the schedulers on the bundled workloads, write plots
#   make test   # the test suite
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
RESULTS ?= results/demo

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/rlsched evaluate \
	    --workload wfcommons:workloads/wfcommons \
	    --pool preset:workstation-4 \
	    --scheduler random,fifo,sjf,cp,tetris,heft \
	    --arrivals poisson --load 0.85 --perturb all --seeds 3 \
	    --json $(RESULTS)/results.json --plot $(RESULTS)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check rlsched envs agents scripts tests

clean:
	rm -rf $(VENV) results
