# PicoSAM3-ROS developer commands. `make help` lists them.
# Everything runs inside .venv and the colcon overlay (tools/env.sh); works with or
# without a sourced ROS 2 install (see tools/bootstrap.sh for the two modes).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
ENV := source tools/env.sh

.PHONY: help bootstrap build test demo lint bench model constraints clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap:  ## create/refresh .venv (pinned deps) and build the workspace if anything changed
	tools/bootstrap.sh

build:  ## bootstrap deps, then always run colcon build --symlink-install
	tools/bootstrap.sh --build

test: bootstrap  ## build, run every test through colcon test, fail (and list failures) if any fails
	tools/test.sh $(TEST_ARGS)

demo: bootstrap  ## the main job on the bundled defaults, no camera needed
	$(ENV) && python -m picosam3_ros.demo.demo $(DEMO_ARGS)

lint: bootstrap  ## ruff on all Python code (also runs inside make test)
	$(ENV) && ruff check .

bench: bootstrap  ## run every bench/*.py (each prints a table)
	@$(ENV) && shopt -s nullglob && benches=(bench/*.py) && \
	  if [ $${#benches[@]} -eq 0 ]; then echo "no bench/*.py yet"; fi && \
	  for b in "$${benches[@]}"; do echo "== $$b"; python "$$b"; done

model: bootstrap  ## retrain the default model on ../shared/data and package it into picosam3_ros/models (CPU, ~2 h)
	$(ENV) && python -m picosam3_train.cli train --config picosam3_train/configs/picosam3.yaml \
	  --set out_dir=runs/picosam3_default && \
	python -m picosam3_train.cli train --config picosam3_train/configs/picosam3.yaml \
	  --set init_checkpoint=runs/picosam3_default/best.pt --set lr=0.001 --set warmup_steps=30 \
	  --set time_budget_min=22 --set epochs=12 --set eval_every=2 --set threads=1 \
	  --set out_dir=runs/picosam3_default_ft && \
	python -m picosam3_train.cli package --checkpoint runs/picosam3_default_ft/best.pt --out picosam3_ros/models \
	  --work-dir runs/picosam3_default_ft/package

constraints:  ## re-pin requirements/constraints.txt from the current .venv
	.venv/bin/python tools/constraints.py freeze

clean:  ## remove colcon build/install/log (keeps .venv)
	rm -rf build install log

distclean: clean  ## also remove the virtual environments
	rm -rf .venv .venv-*
