#!/usr/bin/env bash
# bench/apply.sh [SIZE_MiB] [RUNS]
#
# Applying a release whose chunks are ~90% in the active slot, against the
# floor of copying the whole image and hashing the copy:
#   shoal update apply  (copy local chunks, fetch the rest from a repository
#                        directory, fsync, re-read and verify every chunk)
#   cp v2.img X && sha256sum X              (no durability)
#   cp v2.img X && sync X && sha256sum X    (same durability as apply)
# Runs alternate; the median of RUNS is reported, with peak RSS of apply.
# Target (issue 4): apply <= 1.5x cp+sha256sum, peak RSS < 128 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
W=${BENCH_DIR:-/tmp/shoal-bench/apply}
SHOAL=$PWD/bin/shoal
go build -o "$SHOAL" ./cmd/shoal
go build -o /tmp/shoal-bench/mkimage ./scripts/mkimage
mkdir -p "$W"
cd "$W"
size=$((SIZE_MIB << 20))

if [ ! -f v2.img ] || [ "$(stat -c %s v1.img)" != "$size" ]; then
  rm -rf v1.img v2.img repo keys dev pristine
  /tmp/shoal-bench/mkimage -o v1.img -size "$size" -seed 11
  /tmp/shoal-bench/mkimage -o v2.img -size "$size" -seed 11 -change 0.25
  "$SHOAL" keys init keys >/dev/null
  "$SHOAL" publish --repo repo --keys keys --channel stable --version 1 rootfs=v1.img >/dev/null
  "$SHOAL" device init dev --slot-size $((size + (64 << 20))) --root keys/root.json --channel stable >/dev/null
  "$SHOAL" update apply --config dev/shoal.toml --source repo >/dev/null 2>&1
  "$SHOAL" device reboot --config dev/shoal.toml >/dev/null
  "$SHOAL" update boot-check --config dev/shoal.toml >/dev/null
  "$SHOAL" publish --repo repo --keys keys --channel stable --version 2 rootfs=v2.img >/dev/null
  # The device with v1 committed in slot B, before it sees v2.
  rm -rf pristine && mkdir pristine && cp -a dev/state dev/boot.json pristine/
fi
"$SHOAL" chunk v1.img -o v1.idx >/dev/null
"$SHOAL" chunk v2.img -o v2.idx >/dev/null
"$SHOAL" diff v1.idx v2.idx --json > diff.json

# Back to v1 committed in slot B, and slot A emptied (sparse zeros), so each
# run installs v2 from scratch instead of finding it already in place.
restore() {
  rm -rf dev/state dev/boot.json; cp -a pristine/state pristine/boot.json dev/
  local n; n=$(stat -c %s dev/slot-a.img); truncate -s 0 dev/slot-a.img; truncate -s "$n" dev/slot-a.img
}
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

cat v1.img v2.img > /dev/null   # warm the page cache for every contender
: > t_apply; : > t_cp; : > t_cpsync; : > rss
for i in $(seq "$RUNS"); do
  restore
  s=$(now)
  /usr/bin/time -f %M -o rss.one "$SHOAL" update apply --config dev/shoal.toml --source repo --json > apply.json 2>/dev/null
  e=$(now); echo "$e - $s" | bc >> t_apply; cat rss.one >> rss
  s=$(now); cp v2.img copy.img && sha256sum copy.img >/dev/null; e=$(now); echo "$e - $s" | bc >> t_cp; rm -f copy.img
  s=$(now); cp v2.img copy.img && sync copy.img && sha256sum copy.img >/dev/null; e=$(now); echo "$e - $s" | bc >> t_cpsync; rm -f copy.img
done
ta=$(median < t_apply); tc=$(median < t_cp); ts=$(median < t_cpsync); r=$(sort -g rss | tail -1)
python3 - "$ta" "$tc" "$ts" "$r" <<'PY'
import json, sys
ta, tc, ts, rss = map(float, sys.argv[1:5])
d = json.load(open("diff.json")); a = json.load(open("apply.json"))
s = a["stats"]
print(f"image {d['total_bytes']>>20} MiB; new bytes {d['new_bytes']/2**20:.1f} MiB ({100*d['new_bytes']/d['total_bytes']:.1f}%), reused {100*d['reused_bytes']/d['total_bytes']:.1f}%")
print(f"apply: copied {s['local_bytes']/2**20:.1f} MiB locally, fetched {s['fetched_bytes']/2**20:.1f} MiB in {s['fetched_chunks']} chunks")
print(f"{'contender':28s} {'median s':>9s}")
print(f"{'shoal update apply':28s} {ta:9.2f}")
print(f"{'cp + sha256sum':28s} {tc:9.2f}")
print(f"{'cp + sync + sha256sum':28s} {ts:9.2f}")
print(f"ratio apply / (cp + sha256sum)        = {ta/tc:.2f}  (target <= 1.5)")
print(f"ratio apply / (cp + sync + sha256sum) = {ta/ts:.2f}")
print(f"peak RSS of apply: {rss/1024:.1f} MiB (target < 128 MiB)")
PY
