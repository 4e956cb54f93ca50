#!/usr/bin/env bash
# The one command of a lent GPU machine (torch and transformers there, nothing downloadable), run from the
# repository root with `.whl` carried: installs the carried wheels (what the engine needs that the machine's
# image lacks or has too old) into /tmp/site, puts the source on the path through .mypy-path's symlinks
# (no install), prints the versions and runs bench/gpu.py, bench/fleet.py, bench/long_audio.py and bench/decode_step.py,
# their JSON reports and log written under $OUT. About 6 minutes on an H100 (the fleet's 64 × 2k-token caches need ~67 GiB
# of KV: on an 80 GB card that count is reported as skipped).
#
#     bash bench/gpu_run.sh [bench/gpu.py's arguments]
#
# Fill .whl (git-ignored) here first: the wheels the GPU image lacks, for CPython 3.12 —
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_31_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#         transformers==5.24.0 tokenizers==0.23.3 huggingface_hub==1.33.0 structlog==26.1.0 llguidance==1.9.1
# and the speech the long-audio bench cuts its utterances from (no espeak-ng there):
#     python -m bench.long_audio --save-speech .whl/speech60.npy
set -euo pipefail
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/.mypy-path:$PWD" PYTHONUNBUFFERED=1
python3 - <<'EOF' 2>&1 | tee "$OUT/gpu.log"
import platform, torch, transformers, huggingface_hub, tokenizers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}, huggingface_hub {huggingface_hub.__version__}, "
      f"tokenizers {tokenizers.__version__}; {gpu}")
EOF
python3 -m bench.gpu --out "$OUT/gpu.json" "$@" 2>&1 | tee -a "$OUT/gpu.log"
# Speech end → first token for long utterances on the same card (the speech comes as a file: no espeak-ng there).
python3 -m bench.long_audio --preset "${LONG_AUDIO_PRESET:-7b-random}" --device auto --dtype auto \
    --speech .whl/speech60.npy --repeats 3 --out "$OUT" 2>&1 | tee -a "$OUT/gpu.log"
# Where one decode step's time goes: eager against a CUDA graph, 1, 8 and 32 rows.
python3 -m bench.decode_step --out "$OUT/decode_step.json" 2>&1 | tee -a "$OUT/gpu.log"
# The fleet: batch-1 decode against the bandwidth floor, 1/8/32/64 conversations with 2k-token histories,
# TTFT among 32, the longest gap a 30 s clip's prefill leaves.
python3 -m bench.fleet --out "$OUT/fleet.json" 2>&1 | tee -a "$OUT/gpu.log"
