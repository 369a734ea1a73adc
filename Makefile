# forgelab: `make run` sets everything up and trains the main job; `make test` sets up and runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-only machines get the CPU build of torch; a machine with an NVIDIA driver gets the CUDA one.
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),constraints/gpu.txt,constraints/cpu.txt)
MAIN_EXPERIMENT ?= cartpole-ppo
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: setup run test lint bench-rl bench-generative clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/cpu.txt constraints/gpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[test]"
	@if $(BIN)/python -m pip list 2>/dev/null | grep -qi '^nvidia-' && [ "$(CONSTRAINTS)" = constraints/cpu.txt ]; then \
		echo "error: CUDA packages were installed on a CPU-only machine"; exit 1; fi
	touch $@

run: setup
	SDL_VIDEODRIVER=dummy $(BIN)/forgelab run $(MAIN_EXPERIMENT)

test: setup
	SDL_VIDEODRIVER=dummy $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

BENCH_SEEDS ?= 20

bench-rl: setup
	$(BIN)/python benchmarks/rl_vs_sb3.py --seeds $(BENCH_SEEDS)

bench-generative: setup
	$(BIN)/python benchmarks/generative_loops.py

clean:
	rm -rf $(VENV) runs wandb .pytest_cache
