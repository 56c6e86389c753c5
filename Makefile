# latentdial — the two commands (README) and a few helpers.
#
#   make serve   fresh machine -> .venv-serve with only the serving extra (no torch) -> gRPC server on models/
#   make test    fresh machine -> .venv with the dev set (torch 2.13.0 CPU wheel first) -> whole test suite
#
# Each target creates and fills its own virtual environment once; the stamp file
# is refreshed when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
SERVE_VENV ?= .venv-serve
# tritonclient pins protobuf < 7 and latentdial needs >= 7: the OIP tests run it from its own venv
TRITON_VENV ?= .venv-tritonclient
# make bench-peers: Triton through PyTriton (ships the tritonserver binary) and KServe, each in its own venv
PYTRITON_VENV ?= .venv-pytriton
KSERVE_VENV ?= .venv-kserve
PIP_FLAGS ?= --quiet --disable-pip-version-check --no-input
# make serve listens on this machine only; ADDRESS=0.0.0.0:50051 make serve listens on every interface
ADDRESS ?= 127.0.0.1:50051
PYTEST_ARGS ?=

.PHONY: serve test install-dev install-serve tritonclient-venv browser bench-frontdoors bench-peers bench-edit-kinds pytriton-venv kserve-venv protos lint sweep study study-snap study-gpu ship ship-finish ship-cooldown ship-gpu bench-runtimes bench-service profile-service bench-train bench-data bench-metrics loadtest container-check clean

serve: $(SERVE_VENV)/.installed
	$(SERVE_VENV)/bin/latentdial serve --repository models --host $(word 1,$(subst :, ,$(ADDRESS))) --port $(word 2,$(subst :, ,$(ADDRESS)))

test: $(VENV)/.installed $(TRITON_VENV)/.installed browser
	$(VENV)/bin/python -m pytest -q --durations=15 $(PYTEST_ARGS)

install-serve: $(SERVE_VENV)/.installed
install-dev: $(VENV)/.installed

$(SERVE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install $(PIP_FLAGS) -e ".[serve]"
	touch $@

# torch==2.13.0 first: it resolves to the CPU wheel; a plain `torch` would pull CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) torch==2.13.0
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -e ".[dev]"
	touch $@

# tests/serving/test_oip.py runs tritonclient (gRPC and HTTP) from here against a real server
tritonclient-venv: $(TRITON_VENV)/.installed
$(TRITON_VENV)/.installed:
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install $(PIP_FLAGS) "tritonclient[grpc,http]" numpy
	touch $@

# tests/serving/test_page_browser.py drives Debian's chromium + chromium-driver; installed here when missing (needs root)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (Debian packages) for the page's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "the browser test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; exit 1; fi

protos: $(VENV)/.installed
	$(VENV)/bin/python scripts/gen_protos.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench-runtimes: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_runtimes.py

# The service against its ceiling (echo + ONNX Runtime), batching on / off, one worker and two;
# writes reports/bench_service/bench_service.{json,md}. About 15 minutes; run it on a quiet machine.
bench-service: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_service.py --workers 1 2 --out reports/bench_service

# Where a request's time goes: py-spy samples the server under 64 callers (reports/profile/).
PROFILE_MODEL ?= conv
profile-service: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/profile_service.py --model $(PROFILE_MODEL) --out reports/profile-$(PROFILE_MODEL)

# single-image encode over v1 gRPC, OIP gRPC and OIP HTTP (binary) at 1, 8, 64 callers, side by side
bench-frontdoors: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_frontdoors.py

# latentdial beside Triton (PyTriton) and KServe's ModelServer on the same machine, in the same run, on the
# default model's ONNX graphs: OIP gRPC (tritonclient) and latentdial's v1 Encode, 1/8/64 callers, batch 1
# and 64; about 4 minutes (BENCH_PEERS_ARGS=--long for the published table: about 35 minutes, quiet machine).
# Writes reports/bench_peers/bench_peers.{md,json}.
BENCH_PEERS_ARGS ?=
bench-peers: $(VENV)/.installed $(TRITON_VENV)/.installed $(PYTRITON_VENV)/.installed $(KSERVE_VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_peers.py $(BENCH_PEERS_ARGS)

pytriton-venv: $(PYTRITON_VENV)/.installed
$(PYTRITON_VENV)/.installed:
	$(PYTHON) -m venv $(PYTRITON_VENV)
	$(PYTRITON_VENV)/bin/python -m pip install $(PIP_FLAGS) nvidia-pytriton==0.7.0 onnxruntime==1.32.0 numpy
	touch $@

# kserve pins its own protobuf and grpcio; kept apart from latentdial's
kserve-venv: $(KSERVE_VENV)/.installed
$(KSERVE_VENV)/.installed:
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install $(PIP_FLAGS) kserve==0.21.0 onnxruntime==1.32.0 numpy
	touch $@

# EditAttributes on the shipped VAE (models/dsprites/5) beside a StarGAN editor of the full recipe (configs/families/)
# (untrained, 2 steps: speed only), one server; writes reports/bench_edit_kinds/bench_edit_kinds.{json,md}.
# About 2 minutes; run it on a quiet machine.
bench-edit-kinds: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_edit_kinds.py --out reports/bench_edit_kinds

bench-train: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_train.py

bench-data: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_data.py

bench-metrics: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/bench_metrics.py

# The bounded sweep of objectives behind the shipped dSprites model (docs/models.md#the-sweep), as
# Ray Tune trials on a local Ray (docs/training.md#sweeps-and-studies). Run it again to resume it.
#   make sweep [SWEEP_STEPS=<steps per run>] [SWEEP_ARGS="--address auto --cpus-per-trial 2"]
SWEEP_STEPS ?= 1000
SWEEP_ARGS ?=
sweep: $(VENV)/.installed
	$(VENV)/bin/latentdial sweep configs/sweep/dsprites.toml --out runs/sweep-dsprites --steps $(SWEEP_STEPS) $(SWEEP_ARGS)

# The label study (configs/sweep/label_study.toml: the shipped semi-supervised recipe with 100, 1,000,
# 10,000 or every label, 3 seeds, dSprites and colour dSprites; reference metrics, 1,000 edits per
# factor judged by the reader, read-back): 18-19 minutes a trial on the 2-core CPU machine, about 7.5
# hours for the 24. The recipe lives in the file; run it again to resume a stopped study.
# study-snap asks whether snapping unlabelled images' named dims to codes helps (about 4 hours).
#   make study [SWEEP_ARGS="--address auto --cpus-per-trial 2"]
study: $(VENV)/.installed
	$(VENV)/bin/latentdial sweep configs/sweep/label_study.toml --out runs/label-study $(SWEEP_ARGS)

study-snap: $(VENV)/.installed
	$(VENV)/bin/latentdial sweep configs/sweep/label_study_snap.toml --out runs/label-study-snap $(SWEEP_ARGS)

# A GPU job: the few-label default (1,000 labels) at the shipped default's length and schedule.
study-gpu: $(VENV)/.installed
	$(VENV)/bin/latentdial sweep configs/sweep/label_study_gpu.toml --out runs/label-study-gpu $(SWEEP_ARGS)

# Reproduce a shipped model: train (bounded), evaluate, export, measure edits, write its report.
#   make ship SHIP=<config> SHIP_STEPS=<step> SHIP_VERSION=<version> [SHIP_NAME=<model name, default SHIP>]
#   (docs/models.md gives each model's values; configs/shipped/<config>.toml, report docs/models/<config>.md)
SHIP ?= dsprites
SHIP_STEPS ?= 10000
SHIP_VERSION ?= 1
SHIP_RUN ?= runs/shipped-$(SHIP)
SHIP_NAME ?= $(SHIP)
SHIP_DIR = models/$(SHIP_NAME)/$(SHIP_VERSION)
ship: $(VENV)/.installed
	$(VENV)/bin/latentdial train --config configs/shipped/$(SHIP).toml --out $(SHIP_RUN) --set steps=$(SHIP_STEPS)
	$(MAKE) ship-finish SHIP=$(SHIP) SHIP_RUN=$(SHIP_RUN) SHIP_NAME=$(SHIP_NAME) SHIP_VERSION=$(SHIP_VERSION)

# Add an lr cooldown to a run under way: resume it to COOLDOWN_TO steps, the lr decaying linearly
# to 0 over the last COOLDOWN_STEPS (docs/training.md#cooldown). The default model's recipe:
#   make ship-cooldown SHIP=dsprites SHIP_RUN=runs/ship-gpu/runs/dsprites COOLDOWN_TO=95300 COOLDOWN_STEPS=36000
COOLDOWN_TO ?= 95300
COOLDOWN_STEPS ?= 36000
ship-cooldown: $(VENV)/.installed
	$(VENV)/bin/latentdial train --config configs/shipped/$(SHIP).toml --out $(SHIP_RUN) --resume \
		--set steps=$(COOLDOWN_TO) --set optimizer.cooldown_steps=$(COOLDOWN_STEPS) \
		--set device=cpu --set num_threads=2 --set checkpoint_every=4000 --set keep_checkpoints=20

# Everything after training, for a run trained anywhere (e.g. by make ship-gpu on a GPU host):
#   make ship-finish SHIP=dsprites SHIP_RUN=runs/ship-gpu/runs/dsprites SHIP_VERSION=4
ship-finish: $(VENV)/.installed
	$(VENV)/bin/latentdial evaluate $(SHIP_RUN)
	$(VENV)/bin/latentdial export $(SHIP_RUN) $(SHIP_DIR) --variants fp16,int8 --overwrite
	$(VENV)/bin/latentdial evaluate $(SHIP_DIR) --metrics factor_vae --preset reference --out docs/models/$(SHIP)_factor_vae_reference.json
	$(VENV)/bin/latentdial evaluate-edits $(SHIP_DIR) --num 1000 --out docs/models/$(SHIP)_edits.json \
		--sheet docs/models/images/$(SHIP)_edit_sheet.png
	$(VENV)/bin/python scripts/model_report.py $(SHIP_DIR) --out docs/models/$(SHIP).md --edits docs/models/$(SHIP)_edits.json \
		--sheet docs/models/images/$(SHIP)_edit_sheet.png --reference docs/models/$(SHIP)_factor_vae_reference.json

# Every shipped model at full length (300k steps) on a GPU host, all at once, bounded to 9 minutes
# (each run stops at a checkpoint when its share is spent; run it again to resume). Run on an H200:
# docs/training.md#training-on-a-gpu. Then make ship-finish on each run.
#   make ship-gpu [SHIP_GPU_STEPS=300000] [SHIP_GPU_BUDGET_S=540]
SHIP_GPU_STEPS ?= 300000
SHIP_GPU_BUDGET_S ?= 540
ship-gpu: $(VENV)/.installed
	$(VENV)/bin/python scripts/ship_gpu.py --steps $(SHIP_GPU_STEPS) --budget-s $(SHIP_GPU_BUDGET_S) --device cuda

loadtest: $(VENV)/.installed
	$(VENV)/bin/python loadtest/run_headless.py --users 32 --spawn-rate 8 --run-time 60s --out reports/

# Build the CPU, example app and Locust images with podman and run them for real (docs/deployment.md).
# Needs root for apt-get/podman on a fresh machine; podman's state stays under .cache/containers.
CONTAINER_VENV ?= .venv-containers
$(CONTAINER_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CONTAINER_VENV)
	$(CONTAINER_VENV)/bin/python -m pip install $(PIP_FLAGS) -e ".[serve,containers]"
	touch $@

container-check: $(CONTAINER_VENV)/.installed
	$(CONTAINER_VENV)/bin/python scripts/container_check.py

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(TRITON_VENV) $(PYTRITON_VENV) $(KSERVE_VENV) $(CONTAINER_VENV) build *.egg-info .pytest_cache
