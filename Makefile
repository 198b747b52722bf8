# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SLURM_DIR ?= /tmp/fluidperc-slurm
MN_DIR ?= /tmp/fluidperc-mn
PYTEST_ARGS ?= --durations=15
# make test runs the suite's groups side by side (tests/run_groups.py): the single-node Slurm tests, the multi-node
# and Ray tests, and the rest over this many pytest-xdist workers (docs/development.md).
TEST_WORKERS ?= 2
# LSiM's weights for the study: the staged copy beside the checkout when there is one (FLUIDPERC_WEIGHTS wins)
STUDY_ENV := $(if $(FLUIDPERC_WEIGHTS),,$(if $(wildcard ../shared/weights/LSiM.pth),FLUIDPERC_WEIGHTS=$(abspath ../shared/weights),))

.PHONY: install lint docs demo study-cpu study-sr study-ae study-v2 test test-fast fuzz cluster-up cluster-down multinode-up multinode-down bench clean

# Reinstall only when the dependency files change (a second `make` is quick).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The layers contract in pyproject.toml: imports only point down, fluidperc never imports hpc, no import cycles.
lint: install
	$(VENV)/bin/lint-imports --no-cache

# The docs site into site/ (mkdocs.yml; the sweep reference page is generated from the sweep models).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

demo: install
	$(PY) -m hpc.launch sweeps/demo.yaml

# The CPU-scale study behind RESULTS.md (local backend, a few hours on 2 cores; a relaunch finishes only what is
# missing). LSiM's weights: ../shared/weights when it exists, else `python -m fluidperc.weights fetch lsim` first.
study-cpu: install
	$(STUDY_ENV) $(PY) -m hpc.launch sweeps/study_cpu_tune.yaml --out runs/study_cpu_tune --wait
	$(STUDY_ENV) $(PY) -m hpc.launch sweeps/study_cpu.yaml --out runs/study_cpu --wait
	$(PY) -m fluidperc.analysis runs/study_cpu

# One task of the study retrained on its own (SR at 2000 steps, AE at 4000: at 1000 and 2000 they had not levelled
# off; RESULTS.md). Longer than a session on 2 cores, so it runs in pieces across machines: restore the published
# bundle (study/study_cpu: finished weights, unfinished cells' checkpoints, curves, compute records) into the run
# directory, train until done, and publish the run as runs/study_cpu.bundle (also when the launch fails); commit that
# as study/study_cpu to carry the progress to the next machine (RESULTS.md, "Runs longer than one machine").
study-sr: STUDY_TASK := 'train.tasks=[sr]' 'train.datasets.1.tasks=[sr]'
study-ae: STUDY_TASK := 'train.tasks=[ae]' 'train.datasets.1.tasks=[ae]'
study-sr study-ae: install
	$(PY) -m fluidperc.analysis restore study/study_cpu runs/study_cpu
	rc=0; $(STUDY_ENV) $(PY) -m hpc.launch sweeps/study_cpu.yaml --out runs/study_cpu --wait $(STUDY_TASK) || rc=$$?; \
	  $(PY) -m fluidperc.analysis publish runs/study_cpu runs/study_cpu.bundle; exit $$rc

# The study v2 behind RESULTS.md v2 (sweeps/study_v2_search.yaml, then sweeps/study_v2.yaml; about 15 h on 2 cores),
# in pieces across machines: each step restores its published bundle (study/study_v2_search, study/study_v2: finished
# weights, unfinished cells' checkpoints, curves, compute records) when there is one, trains what is missing at the
# lowest CPU priority (nice 19: tests and CI on the same machine go first), and publishes the run back to study/
# even when the launch fails or is stopped; commit study/ to carry the progress. The study starts only once the
# search has finished, because it trains each loss with what the search chose.
study-v2: install
	test ! -f study/study_v2_search/bundle.json || $(PY) -m fluidperc.analysis restore study/study_v2_search runs/study_v2_search
	rc=0; $(STUDY_ENV) nice -n 19 $(PY) -m hpc.launch sweeps/study_v2_search.yaml --out runs/study_v2_search --wait || rc=$$?; \
	  $(PY) -m fluidperc.analysis publish runs/study_v2_search study/study_v2_search; exit $$rc
	test ! -f study/study_v2_search_top/bundle.json || $(PY) -m fluidperc.analysis restore study/study_v2_search_top runs/study_v2_search_top
	rc=0; $(STUDY_ENV) nice -n 19 $(PY) -m hpc.launch sweeps/study_v2_search_top.yaml --out runs/study_v2_search_top --wait || rc=$$?; \
	  $(PY) -m fluidperc.analysis publish runs/study_v2_search_top study/study_v2_search_top; exit $$rc
	test ! -f study/study_v2/bundle.json || $(PY) -m fluidperc.analysis restore study/study_v2 runs/study_v2
	rc=0; $(STUDY_ENV) nice -n 19 $(PY) -m hpc.launch sweeps/study_v2.yaml --out runs/study_v2 --wait || rc=$$?; \
	  $(PY) -m fluidperc.analysis publish runs/study_v2 study/study_v2; exit $$rc

# Brings up the local Slurm clusters (as root with apt-get; elsewhere the Slurm tests skip with the reason):
# the single-node one on loopback and the three-node one in network namespaces. Runs the whole suite, and tears
# both down even when tests fail.
test: lint docs
	@up=0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  FLUIDPERC_SLURM_DIR=$(SLURM_DIR) bash slurm/local-cluster-up.sh || exit 1; up=1; \
	  FLUIDPERC_MN_DIR=$(MN_DIR) bash slurm/local-multinode-up.sh || { FLUIDPERC_SLURM_DIR=$(SLURM_DIR) bash slurm/local-cluster-down.sh; exit 1; }; \
	else echo "make test: not root on Debian/Ubuntu, so no local Slurm clusters; the Slurm tests will skip."; fi; \
	rc=0; SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf FLUIDPERC_SLURM_DIR=$(SLURM_DIR) FLUIDPERC_MN_DIR=$(MN_DIR) \
	  $(PY) tests/run_groups.py --workers $(TEST_WORKERS) -- -ra $(PYTEST_ARGS) || rc=$$?; \
	if [ $$up = 1 ]; then FLUIDPERC_MN_DIR=$(MN_DIR) bash slurm/local-multinode-down.sh; \
	  FLUIDPERC_SLURM_DIR=$(SLURM_DIR) bash slurm/local-cluster-down.sh; fi; \
	exit $$rc

# Unit and contract tests (at most 3 minutes on 2 cores): no Slurm, no Ray, no training beyond a few steps. Two
# pytest-xdist workers with one torch thread each (3m07s in one process with torch's default threads, 2026-12-07).
test-fast: lint
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -ra -n $(TEST_WORKERS) --dist loadscope \
	  -m "not slurm and not multinode and not slow" $(PYTEST_ARGS)

# Hunting for new sweep-file failures: the random fuzz profile, 5000 examples (make test runs a fixed 500).
# Add what it finds to tests/test_sweep_fuzz.py as an @example.
fuzz: install
	FLUIDPERC_FUZZ=hunt $(PY) -m pytest -ra tests/test_sweep_fuzz.py $(PYTEST_ARGS)

cluster-up:
	FLUIDPERC_SLURM_DIR=$(SLURM_DIR) bash slurm/local-cluster-up.sh

cluster-down:
	FLUIDPERC_SLURM_DIR=$(SLURM_DIR) bash slurm/local-cluster-down.sh

# Three compute nodes and a controller, each in its own network and UTS namespace (slurm/README.md).
multinode-up:
	FLUIDPERC_MN_DIR=$(MN_DIR) bash slurm/local-multinode-up.sh

multinode-down:
	FLUIDPERC_MN_DIR=$(MN_DIR) bash slurm/local-multinode-down.sh

clean:
	rm -rf runs site .pytest_cache
