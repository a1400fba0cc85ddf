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

# synthetic CelebA -> train the tiny preset -> translate held-out faces -> translation accuracy
demo: $(STAMP)
	$(BIN)/stargan synth --out $(DEMO)/data --dataset celeba --num-images 2000
	$(BIN)/stargan train --data $(DEMO)/data/celeba --preset tiny --out $(DEMO)/run
	$(BIN)/stargan translate --checkpoint $(DEMO)/run --out $(DEMO)/translated \
		--input $(DEMO)/data/celeba/img_align_celeba/0019*.jpg
	$(BIN)/stargan evaluate --checkpoint $(DEMO)/run --data $(DEMO)/data/celeba \
		> $(DEMO)/evaluation.json
	@echo "grid of held-out faces x every target: $(DEMO)/translated/grid.png"
	@echo "training samples: $(DEMO)/run/samples/   metrics: $(DEMO)/evaluation.json"

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(DEMO) .pytest_cache
