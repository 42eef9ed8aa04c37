#!/usr/bin/env bash
# Installs llama-cpp-python with its server into .venv: the local OpenAI-compatible model server
# the llm tests run against. PyPI has it as source only, so it is built once, for the CPU alone
# and with nothing but the libraries the bindings load, and the wheel is kept in a cache outside
# the repository (REYNOLDS_WHEEL_CACHE, default ~/.cache/reynolds/wheels) that later installs,
# CI's included, take it from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=0.3.36
CACHE=${REYNOLDS_WHEEL_CACHE:-$HOME/.cache/reynolds/wheels}
PY=.venv/bin/python

if "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
mkdir -p "$CACHE"
if ! compgen -G "$CACHE/llama_cpp_python-$VERSION-*.whl" >/dev/null; then
  echo "Building llama-cpp-python $VERSION (CPU only, once; kept in $CACHE)" >&2
  start=$(date +%s)
  # No native tuning, no GPU or BLAS backends, no OpenMP, no multimodal library, no tests,
  # examples, tools or server of llama.cpp's own; -O0: the test model is tiny, the build is not
  # (on 2 cores: about 5 minutes, against 9 at -O1).
  # --no-cache-dir: pip's own cache of built wheels would hand back a build of other flags.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
-DGGML_OPENMP=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF \
-DCMAKE_C_FLAGS_RELEASE=-O0 -DCMAKE_CXX_FLAGS_RELEASE=-O0" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-cache-dir \
      --wheel-dir "$CACHE" "llama-cpp-python==$VERSION" >&2
  echo "Built in $(($(date +%s) - start)) s" >&2
fi
wheel=$(compgen -G "$CACHE/llama_cpp_python-$VERSION-*.whl" | head -n 1)
"$PY" -m pip install --quiet --disable-pip-version-check "${wheel}[server]" >&2
