# Two entry points, each self-sufficient on a machine with only Python 3.11+ and make:
#   make run    sets up .venv and runs the main job
#   make test   sets up .venv and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TASK   ?= MiniGrid-DoorKey-8x8

.PHONY: install run test test-all lint clean

$(BIN)/car-jax: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/car-jax

run: install
	$(BIN)/car-jax run $(TASK)

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# Everything, including the tests marked slow (brax pusher, pixel-mode reference specs, ...).
test-all: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
