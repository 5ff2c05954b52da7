# Two entry points for a fresh machine: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-airflow-3.3 test-airflow-3.1 test-airflow-3.2 bench clean

$(STAMP): pyproject.toml emulator/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ./emulator -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

# The whole suite on the pinned newest Airflow (3.3), then the unit, emulator and DAG tests on the
# newest 3.1 and 3.2, each in its own virtual environment from constraints/airflow-VERSION.txt.
test: test-airflow-3.3 test-airflow-3.1 test-airflow-3.2

test-airflow-3.3: $(STAMP)
	bash scripts/system-packages.sh
	$(BIN)/ruff check airflow_provider_lotimage tests example_dags benchmarks airflow_harness emulator
	$(BIN)/mypy
	bash scripts/check-dists.sh
	$(BIN)/pytest

test-airflow-3.1 test-airflow-3.2: test-airflow-%:
	bash scripts/test-airflow.sh $*

bench: $(STAMP)
	$(BIN)/python -m benchmarks --sizes 6,24,60

clean:
	rm -rf $(VENV) .venv-3.1 .venv-3.2 output .airflow_home dist
