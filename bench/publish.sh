#!/usr/bin/env bash
# bench/publish.sh [SIZE_MiB] [RUNS]
#
# Issue 3's target: `shoal publish` of an image into an empty repository
# against `casync make` writing zstd chunks into an empty store with the
# same chunk sizes, same image, same run, alternating; median of RUNS.
# shoal's time includes its fsyncs (chunk data, metadata); casync does not
# fsync, so the comparison favours casync. Also: republishing the unchanged
# image (must write 0 chunks).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
need casync
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
W=${BENCH_DIR:-/tmp/shoal-bench/publish}
SHOAL=$PWD/bin/shoal
go build -o "$SHOAL" ./cmd/shoal
mkdir -p "$W"
img=$W/img-${SIZE_MIB}m
if [ ! -f "$img" ]; then
  go run ./scripts/mkimage -o "$img" -size $((SIZE_MIB << 20)) -seed 7
fi
warm "$img"
rm -rf "$W/keys" && "$SHOAL" keys init "$W/keys" >/dev/null

echo "machine: $(machine)"
echo "image: $img ($SIZE_MIB MiB); $(load)"
: > "$W/t_shoal"; : > "$W/t_casync"
for i in $(seq "$RUNS"); do
  rm -rf "$W/repo" "$W/store" "$W/out.caibx"; sync
  s=$(now); "$SHOAL" publish --repo "$W/repo" --keys "$W/keys" --channel stable --version 1 rootfs="$img" > "$W/pub.txt"; e=$(now)
  echo "$e - $s" | bc >> "$W/t_shoal"
  sync
  s=$(now); casync make --compression=zstd --chunk-size=16384:65536:262144 --store="$W/store" "$W/out.caibx" "$img" >/dev/null; e=$(now)
  echo "$e - $s" | bc >> "$W/t_casync"
done
ts=$(median < "$W/t_shoal"); tc=$(median < "$W/t_casync")
mb=$(div "$SIZE_MIB" 1 0)
echo "shoal publish   median $ts s  ($(div "$(echo "$SIZE_MIB*1.048576" | bc)" "$ts" 0) MB/s)"
echo "casync make     median $tc s  ($(div "$(echo "$SIZE_MIB*1.048576" | bc)" "$tc" 0) MB/s)"
echo "ratio casync/shoal = $(div "$tc" "$ts")  (target >= 3)"
grep -E "^wrote" "$W/pub.txt" || true

s=$(now); out=$("$SHOAL" publish --repo "$W/repo" --keys "$W/keys" --channel stable --version 2 rootfs="$img"); e=$(now)
echo "republish unchanged: $(echo "$e - $s" | bc) s; $(grep -E '^wrote' <<<"$out")"
