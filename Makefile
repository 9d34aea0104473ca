# QwenRL Studio — set-up and everyday commands.
#   make install   create .venv and install the project (CPU torch where there is no GPU)
#   make test      install, then run the whole test suite
#   make studio    install, then serve the studio on ./workspace
#   make bench     install, then run the benchmarks (figures go to benchmarks/results/)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch for machines without an NVIDIA GPU; on a GPU machine pip resolves torch normally.
TORCH_CPU ?= torch==2.13.0
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
PYTEST_ARGS ?=
WORKSPACE ?= ./workspace

.PHONY: install test studio bench clean

install: $(VENV)/.installed

# setup.py and the C sources: the optional extensions (arena/_loops.c, arena/_scan.c) are built at install.
# The code is compiled to bytecode up front, as pip does for the packages it installs (an editable
# install is not, and where PYTHONDONTWRITEBYTECODE is set every command would compile it again).
$(VENV)/.installed: pyproject.toml setup.py $(wildcard arena/*.c)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifneq ($(HAS_GPU),1)
	$(BIN)/python -m pip install --quiet "$(TORCH_CPU)"
	echo "$(TORCH_CPU)" > $(VENV)/torch-constraint.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/torch-constraint.txt -e ".[test]"
else
	$(BIN)/python -m pip install --quiet -e ".[test]"
endif
	$(BIN)/python -m compileall -q qwenrl arena training app
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

studio: install
	$(BIN)/qwenrl studio --workspace $(WORKSPACE)

# One at a time: each benchmark wants the cores to itself.
bench: install
	$(BIN)/python benchmarks/ratings.py
	$(BIN)/python benchmarks/world_parse.py
	$(BIN)/python benchmarks/rewards.py
	$(BIN)/python benchmarks/judge.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/grpo.py
	$(BIN)/python benchmarks/grpo_signal.py
	$(BIN)/python benchmarks/arena_load.py
	$(BIN)/python benchmarks/arena_browser.py
	$(BIN)/python benchmarks/arena_simulation.py

clean:
	rm -rf $(VENV) build *.egg-info arena/*.so
