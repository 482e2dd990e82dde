# PicoSAM3-ROS developer commands. `make help` lists them.
# Everything runs inside .venv and the colcon overlay (tools/env.sh); works with or
# without a sourced ROS 2 install (see tools/bootstrap.sh for the two modes).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
ENV := source tools/env.sh

.PHONY: help bootstrap build test demo lint bench model model-cpu constraints clean distclean

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

model: bootstrap  ## retrain the default model on ../shared/data (one CUDA GPU, ~6 min; see tools/gpu_train) and package it
	$(ENV) && python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "make model needs a CUDA GPU (the default model was trained on one H200 in 4.4 min); on a CPU use make model-cpu")' && \
	python tools/gpu_train/pack_stores.py pack .gpu_carry/packed --datasets \
	  coco/annotations/instances_train2017.json:coco/train2017 pennfudan/instances_pennfudan.json:pennfudan/images \
	  davis2016/instances_davis2016.json:davis2016/images && \
	ABLATIONS=0 RUNS=runs/gpu OUT=runs/gpu_out PY=python bash tools/gpu_train/run_gpu.sh 2.4 2.0 && \
	python -m picosam3_train.cli package --checkpoint runs/gpu/c_s2_distill/last.pt --out picosam3_ros/models \
	  --work-dir runs/gpu/package

model-cpu: bootstrap  ## the same recipe on a CPU, ground truth only and box-aware (~2 h on 2 cores; a weaker model)
	$(ENV) && python -m picosam3_train.cli train --config picosam3_train/configs/picosam3.yaml \
	  --set box_margin=0.05 --set threads=1 --set out_dir=runs/picosam3_cpu && \
	python -m picosam3_train.cli package --checkpoint runs/picosam3_cpu/best.pt --out picosam3_ros/models \
	  --work-dir runs/picosam3_cpu/package

constraints:  ## re-pin requirements/constraints.txt from the current .venv
	.venv/bin/python tools/constraints.py freeze

clean:  ## remove colcon build/install/log (keeps .venv)
	rm -rf build install log

distclean: clean  ## also remove the virtual environments
	rm -rf .venv .venv-*
