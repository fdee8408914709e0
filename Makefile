# One command to set up and run the demo, one to set up and run the tests.
#   make demo   # evaluate the schedulers on the bundled workloads, write plots
#   make test   # the checks (ruff, mypy on the core), then the test suite
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
# an editable install as a plain path entry: setuptools' default installs an
# import hook that costs every rlsched command some 14 ms of start-up (a
# quarter of serve's time to its first task)
EDITABLE := --config-settings editable_mode=compat -e
RESULTS ?= results/demo
# the simulator and most heuristics compiled by mypyc (rlsched/native.py says why);
# rebuilt when a source changes, skipped with a message where no C compiler is
NATIVE := build/native
NATIVE_SRC := rlsched/sim.py rlsched/view.py rlsched/runtime_model.py rlsched/gangs.py \
	$(addprefix rlsched/schedulers/,share.py ready_set.py device_columns.py simple.py \
	tetris.py las.py idle_classes.py backfill.py) \
	rlsched/native.py scripts/build_native.py

.PHONY: setup native demo test check chaos peers clean

setup: $(VENV)/.installed $(NATIVE)/manifest.json

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet $(EDITABLE) ".[dev,ray]"
	touch $@

$(NATIVE)/manifest.json: $(VENV)/.installed $(NATIVE_SRC)
	$(BIN)/python scripts/build_native.py

native:
	$(BIN)/python scripts/build_native.py

demo: setup
	$(BIN)/rlsched evaluate \
	    --workload wfcommons:workloads/wfcommons \
	    --pool preset:workstation-4 \
	    --scheduler random,fifo,sjf,cp,tetris,heft,share,las,oracle:share,rl:checkpoints/default.zip \
	    --arrivals poisson --load 0.85 --perturb all --seeds 3 --workers 0 \
	    --json $(RESULTS)/results.json --plot $(RESULTS)
	# then a job file through the live scheduler, on the local GPUs where a
	# driver is present, else on a fake pool of four
	rm -rf $(RESULTS)/state
	$(BIN)/rlsched submit examples/jobs/hello-gpus.yaml --state $(RESULTS)/state
	$(BIN)/rlsched serve --pool $$($(BIN)/python -c "import pynvml as n; n.nvmlInit(); print('local')" 2>/dev/null || echo fake:4) \
	    --state $(RESULTS)/state --tick 0.1 --exit-when-idle
	$(BIN)/rlsched status --state $(RESULTS)/state
	$(BIN)/rlsched logs hello-gpus/report --state $(RESULTS)/state

test: check
	$(BIN)/python -m pytest

# serve killed with -9 again and again under 30 jobs: prints its numbers as JSON
chaos: setup
	$(BIN)/python -m pytest -m chaos -s tests/test_chaos.py

# rlsched serve against task-spooler and simple_gpu_scheduler, live (about a
# quarter of an hour); peers not installed are left out: task-spooler is the
# Debian package (apt-get install task-spooler), the other the [peers] extra
peers: setup
	$(BIN)/pip install --quiet $(EDITABLE) ".[peers]"
	@command -v tsp >/dev/null || echo "task-spooler (tsp) is not installed: it is left out"
	$(BIN)/rlsched bench peers --json $(RESULTS)/peers.json --plot $(RESULTS)

# lint (with complexity limits) everywhere, types on the core
check: setup
	$(BIN)/ruff check rlsched envs agents scripts tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) results $(NATIVE)
