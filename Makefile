# Two entry points for a fresh machine: `make demo` and `make test`. Each sets itself up.
# `make docs` builds the docs site into docs/_build/html.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The reduced stages of `make test`, AIRFLOW-pyPYTHON: the unit, emulator and DAG tests on one
# Airflow minor and one Python, each in its own venv from constraints/airflow-AIRFLOW-pyPYTHON.txt
# (scripts/test-airflow.sh). With the whole suite's Airflow 3.3 on Python 3.11, every supported
# Airflow (3.1, 3.2, 3.3) and every claimed Python (3.11, 3.12, 3.13) runs at least once. A stage
# is added with its constraints file and its name here (README, Version policy).
STAGES := 3.1-py3.12 3.2-py3.13
STAGE_TARGETS := $(addprefix test-airflow-,$(STAGES))

.PHONY: demo docs test test-paced test-airflow-3.3 $(STAGE_TARGETS) bench clean

$(STAMP): pyproject.toml emulator/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ./emulator -e ".[test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

# The docs site from docs/*.md (MyST) and the docstrings (sphinx-autoapi); a warning fails it.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# The whole suite on the pinned newest Airflow (3.3) with Python 3.11 (.venv, as `make demo` uses),
# then the reduced stages at the lowest CPU priority beside the paced tests (the thousand-trigger
# test: bound by the key's rate, not the CPU; scripts/run-paced-beside.sh).
test: test-airflow-3.3
	bash scripts/run-paced-beside.sh $(BIN)/python $(MAKE) $(STAGE_TARGETS)

# The paced tests alone (`make test` runs them beside the reduced stages).
test-paced: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m paced tests

# In-process tests in pytest-xdist workers, then the serial ones (real deployments, tests timed
# at a key's real rate) one at a time (scripts/run-tests.sh); the paced ones run in `make test`.
test-airflow-3.3: $(STAMP)
	bash scripts/system-packages.sh
	$(BIN)/ruff check airflow_provider_lotimage tests example_dags benchmarks airflow_harness emulator
	$(BIN)/mypy
	bash scripts/check-dists.sh
	$(MAKE) docs
	bash scripts/run-tests.sh $(BIN)/python

# e.g. test-airflow-3.1-py3.12: bash scripts/test-airflow.sh 3.1 3.12
$(STAGE_TARGETS): test-airflow-%:
	bash scripts/test-airflow.sh $(subst -py, ,$*)

bench: $(STAMP)
	$(BIN)/python -m benchmarks --sizes 6,24,60

clean:
	rm -rf $(VENV) .venv-*/ output .airflow_home dist docs/_build
