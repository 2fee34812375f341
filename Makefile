# p2p-eval: `make demo` (set up + the main job on synthetic data), `make test`, `make bench`;
# `make smoke-report` regenerates the committed reports/smoke/ (`make demo` writes only under $(DEMO)/).
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/p2p-eval
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out

.PHONY: demo smoke-report test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(CLI) demo --out $(DEMO)

smoke-report: $(STAMP)
	$(CLI) demo --out $(DEMO) --report reports/smoke

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/collect.py --out reports/bench.md

clean:
	rm -rf $(DEMO) .pytest_cache
