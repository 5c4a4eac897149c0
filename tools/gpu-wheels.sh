#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with what a GPU machine without network needs to run tools/gpu-check.sh: the
# dependencies such a machine's image lacks (gpu-check.sh installs voicewatch itself from the tree). The image is expected to hold
# Python 3.12, torch, torchaudio, numpy, safetensors, pyyaml, prometheus-client, anyio, click, h11 and
# pytest; the rest comes from here (manylinux x86-64 wheels for CPython 3.12). Run it where pip reaches PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
# av (PyAV) is left out on purpose: ~40 MB, needed only by the MPEG-TS/DVB tests, which are not GPU checks.
for spec in pyzmq soundfile sounddevice cffi pycparser starlette uvicorn pytest-timeout; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$spec"
done
du -sh .whl && ls .whl
