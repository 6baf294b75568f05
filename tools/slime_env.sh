#!/usr/bin/env bash
# Build the environment `make test-slime` runs in: upstream slime's own argument parser, with
# Megatron-LM at the commit slime's docker/Dockerfile pins (slime's megatron*.patch applied)
# and sglang at slime's pinned version, all under .slime/ (git-ignored, never committed).
#
# Sources are git repositories holding the commits (a bare mirror or a clone):
#   SLIME_SRC     default /work/.mirror/THUDM+slime/repo        (github.com/THUDM/slime)
#   MEGATRON_SRC  default /work/.mirror/NVIDIA+Megatron-LM/repo  (github.com/NVIDIA/Megatron-LM)
# sglang and what its argument module imports come from PyPI with --no-deps into .slime/site
# (never into .venv). The build is cached: .slime/.built-<slime commit> marks a finished one.
set -euo pipefail

PY=${PY:-.venv/bin/python}
OUT=${SLIME_ENV:-.slime}
SLIME_SRC=${SLIME_SRC:-/work/.mirror/THUDM+slime/repo}
MEGATRON_SRC=${MEGATRON_SRC:-/work/.mirror/NVIDIA+Megatron-LM/repo}
SLIME_COMMIT=624b824a8
SGLANG=sglang==0.5.15.post1
# What sglang's server_args and slime's parse_args import, pinned where the newest release
# breaks them (transformers: sglang's own pin; fastapi/starlette: before their API changes).
SITE_PACKAGES=(
  "$SGLANG" transformers==5.12.1 "tokenizers>=0.22,<=0.23.0" "huggingface-hub>=1.5,<2"
  fastapi==0.128.0 "starlette>=0.40,<0.51" uvicorn sglang-router==0.3.2
  psutil pybase64 requests urllib3 certifi httpx httpcore pyzmq ipython traitlets triton
  dill partial_json_parser msgspec sentencepiece setproctitle wandb platformdirs protobuf
  opentelemetry-api xxhash six pylatexenc
)

stamp="$OUT/.built-$SLIME_COMMIT"
if [ -f "$stamp" ]; then exit 0; fi
fail() { echo "test-slime: $*" >&2; exit 2; }
git -C "$SLIME_SRC" cat-file -e "$SLIME_COMMIT^{commit}" 2>/dev/null ||
  fail "no git repository with slime commit $SLIME_COMMIT at $SLIME_SRC (set SLIME_SRC=a clone of github.com/THUDM/slime)"
MEGATRON_COMMIT=$(git -C "$SLIME_SRC" show "$SLIME_COMMIT:docker/Dockerfile" | sed -n 's/^ARG MEGATRON_COMMIT=//p')
git -C "$MEGATRON_SRC" cat-file -e "$MEGATRON_COMMIT^{commit}" 2>/dev/null ||
  fail "no git repository with Megatron-LM commit $MEGATRON_COMMIT at $MEGATRON_SRC (set MEGATRON_SRC=a clone of github.com/NVIDIA/Megatron-LM)"
command -v patch >/dev/null || fail "the 'patch' program is needed (apt-get install patch)"

rm -rf "$OUT/slime" "$OUT/Megatron-LM" "$OUT/site" "$OUT"/.built-*
mkdir -p "$OUT"
git -C "$SLIME_SRC" archive --format=tar --prefix=slime/ "$SLIME_COMMIT" | tar -x -C "$OUT"
git -C "$MEGATRON_SRC" archive --format=tar --prefix=Megatron-LM/ "$MEGATRON_COMMIT" | tar -x -C "$OUT"
# Megatron-LM's tests/ is a regular package that would shadow ours (a namespace package) on PYTHONPATH.
rm -rf "$OUT/Megatron-LM/tests"
for p in "$OUT"/slime/docker/patch/latest/megatron*.patch; do
  patch -d "$OUT/Megatron-LM" -p1 -s --forward < "$p" || fail "$(basename "$p") does not apply to Megatron-LM $MEGATRON_COMMIT"
done
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$OUT/site" "${SITE_PACKAGES[@]}" 2>&1 |
  grep -v -E "^WARNING: (Location|Target)" || true
test -d "$OUT/site/sglang" || fail "installing $SGLANG into $OUT/site failed"
touch "$stamp"
echo "test-slime: built $OUT (slime $SLIME_COMMIT, Megatron-LM $MEGATRON_COMMIT, $SGLANG)"
