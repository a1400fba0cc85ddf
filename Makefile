# The two commands of the README. Both create .venv and install the project when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-output

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# The stargan-pipeline flow on the embedded defaults: synthetic CelebA -> Parquet shards in
# $(DEMO)/storage -> train the tiny preset, tracked in $(DEMO)/mlflow.db -> register and promote
# -> translate the held-out faces on a local Dask cluster. Prefect runs without a server.
demo: $(STAMP)
	@mkdir -p $(DEMO)
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/$(DEMO)/mlflow.db} \
	STARGAN_STORAGE_URL=$${STARGAN_STORAGE_URL:-$(CURDIR)/$(DEMO)/storage} \
	MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 \
		$(BIN)/python -m flows.pipeline

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(DEMO) .pytest_cache
