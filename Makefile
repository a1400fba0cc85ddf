# The two commands of the README. Both create .venv and install the project when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-output
STACK := $(or $(STARGAN_STACK_DIR),.stack)

.PHONY: demo test lint clean stack-up stack-down deploy

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# The stargan-pipeline flow on the embedded defaults: synthetic CelebA -> Parquet shards in
# $(DEMO)/storage -> train the edit-32 preset, tracked in $(DEMO)/mlflow.db -> register and promote
# -> translate the held-out faces on a local Dask cluster. Prefect runs without a server.
# With the local stack up (make stack-up), it uses the stack instead.
demo: $(STAMP)
	@mkdir -p $(DEMO)
	@if kill -0 "$$(cat $(STACK)/pids/prefect 2>/dev/null)" 2>/dev/null; then \
		echo "using the local stack ($(STACK)/env)"; . $(STACK)/env; fi; \
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/$(DEMO)/mlflow.db} \
	STARGAN_STORAGE_URL=$${STARGAN_STORAGE_URL:-$(CURDIR)/$(DEMO)/storage} \
	MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 \
		$(BIN)/python -m flows.pipeline

# S3 API (moto), MLflow and Prefect servers and a worker per pool on 127.0.0.1; source .stack/env
stack-up: $(STAMP)
	bash infra/local/stack-up.sh

stack-down:
	bash infra/local/stack-down.sh

# Every deployment of prefect.yaml to the Prefect server of the environment (source .stack/env)
deploy: $(STAMP)
	@test -n "$$PREFECT_API_URL" -a -n "$$STARGAN_STORAGE_URL" || { echo "PREFECT_API_URL and" \
		"STARGAN_STORAGE_URL are not set: source $(STACK)/env (make stack-up) first"; exit 2; }
	$(BIN)/prefect --no-prompt deploy --all

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(DEMO) .pytest_cache
