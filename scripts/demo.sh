#!/usr/bin/env bash
# make demo: the main job end to end on embedded defaults. Builds nothing
# itself (make demo builds bin/shoal first); writes everything under
# demo-out/ and removes nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-bin/shoal}
OUT=${DEMO_OUT:-demo-out}
SIZE=${DEMO_SIZE:-268435456}   # 256 MiB
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "1. Generate a v1 image and a v2 with a few changed regions ($((SIZE >> 20)) MiB each)"
go run ./scripts/mkimage -o "$OUT/v1.img" -size "$SIZE" -seed 7
go run ./scripts/mkimage -o "$OUT/v2.img" -size "$SIZE" -seed 7 -change 0.04
ls -l "$OUT"/v1.img "$OUT"/v2.img

step "2. Chunk both (FastCDC 16/64/256 KiB, sha2-256)"
"$SHOAL" chunk "$OUT/v1.img" -o "$OUT/v1.idx"
"$SHOAL" chunk "$OUT/v2.img" -o "$OUT/v2.idx"
"$SHOAL" inspect "$OUT/v2.idx"

step "3. What an update v1 -> v2 downloads, versus the full image"
"$SHOAL" diff "$OUT/v1.idx" "$OUT/v2.idx"
