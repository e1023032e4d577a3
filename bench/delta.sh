#!/usr/bin/env bash
# bench/delta.sh: what a v1 device downloads for v2 of a real Debian root
# file system when new chunks travel as zstd deltas against v1's image
# (issue 11), next to whole chunks, casync and a zstd binary patch.
#
# The pairs are bench/dedup.sh's (v1 = debootstrap --variant=minbase, v2 =
# v1 + DEDUP_PACKAGES; each as a 1 GiB ext4 image and as a tar), read from
# its cache. When the cache lacks them, this script builds them with
# dedup.sh's own steps (root, debootstrap and a Debian mirror needed).
#
# For ext4 and tar it reports
#   - whole:  the new chunks of v2 raw (`shoal diff` new_bytes) and as
#             stored chunk objects (whole_compressed_bytes)
#   - delta:  `shoal diff --delta` delta_bytes (delta objects plus the whole
#             objects of chunks without a delta) and the delta index's size
#   - casync: the chunks v2's store adds to v1's (same chunk sizes): their
#             bytes raw and as .cacnk files (casync compresses with zstd)
#   - zstd:   the size of `zstd -3 --long=31 --patch-from=v1 v2`
# and the publisher's side: wall time and peak RSS (/usr/bin/time -v) of
# `shoal diff --delta` next to zstd's, with the load average.
#
# Usage: bench/delta.sh
# Env:   SHOAL (built from ./cmd/shoal unless set), DEDUP_CACHE
#        (/tmp/shoal-dedup), DELTA_LEVEL (best), DELTA_MAX_REF (4M)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CACHE=${DEDUP_CACHE:-/tmp/shoal-dedup}
LEVEL=${DELTA_LEVEL:-best}
MAX_REF=${DELTA_MAX_REF:-4M}
CHUNK=16384:65536:262144

need zstd casync tar go
[ -x /usr/bin/time ] || { echo "delta.sh: /usr/bin/time missing: apt-get install -y time" >&2; exit 1; }

# build_pairs: dedup.sh's build steps without its measurements. dedup.sh
# ends by calling its main; everything above that line only defines
# functions and settings, so it is sourced without that line.
build_pairs() {
	if [ "$(tail -n1 bench/dedup.sh)" != 'main "$@"' ]; then
		echo "delta.sh: bench/dedup.sh no longer ends with 'main \"\$@\"'; run it once to build $CACHE" >&2
		exit 1
	fi
	(
		# shellcheck disable=SC1090
		. <(sed '$d' bench/dedup.sh)
		[ -d "$CACHE/v1" ] || build_v1
		[ -d "$CACHE/v2" ] || build_v2
		for v in v1 v2; do
			[ -f "$CACHE/$v.ext4" ] || build_ext4 "$CACHE/$v" "$CACHE/$v.ext4"
			[ -f "$CACHE/$v.tar" ] || build_tar "$CACHE/$v" "$CACHE/$v.tar"
		done
	)
}
for f in v1.ext4 v2.ext4 v1.tar v2.tar; do
	[ -f "$CACHE/$f" ] || { build_pairs; break; }
done

W="$CACHE/delta"
mkdir -p "$W"
if [ -z "${SHOAL:-}" ]; then
	SHOAL="$W/shoal"
	go build -o "$SHOAL" ./cmd/shoal
fi

# timed OUT CMD...: run CMD under /usr/bin/time -v with its stdout in
# OUT.out; OUT.time gets the report. Prints "WALL_SECONDS MAX_RSS_KIB
# CPU_SECONDS" (user + system: less sensitive than wall time to what else
# runs on the machine).
timed() {
	local out=$1
	shift
	/usr/bin/time -v -o "$out.time" "$@" >"$out.out"
	awk -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
		/Maximum resident set size/ { rss = $2 }
		/User time \(seconds\)|System time \(seconds\)/ { cpu += $2 }
		END { printf "%.2f %d %.2f\n", s, rss, cpu }' "$out.time"
}

# casync_growth KIND: the chunks v2's store adds to v1's: "RAW COMPRESSED COUNT".
casync_growth() {
	local kind=$1 s1="$W/$1.v1.castr" s2="$W/$1.v2.castr"
	rm -rf "$s1" "$s2"
	casync make --chunk-size=$CHUNK --store="$s1" "$W/$kind.v1.caibx" "$CACHE/v1.$kind" >/dev/null
	casync make --chunk-size=$CHUNK --store="$s2" "$W/$kind.v2.caibx" "$CACHE/v2.$kind" >/dev/null
	(cd "$s1" && find . -name '*.cacnk' -printf '%f\n' | sort) >"$W/$kind.s1.list"
	(cd "$s2" && find . -name '*.cacnk' -printf '%f\n' | sort) >"$W/$kind.s2.list"
	local n=0 raw=0 comp=0 f
	while read -r f; do
		raw=$((raw + $(zstd -dc "$s2/${f:0:4}/$f" | wc -c)))
		comp=$((comp + $(stat -c %s "$s2/${f:0:4}/$f")))
		n=$((n + 1))
	done < <(comm -13 "$W/$kind.s1.list" "$W/$kind.s2.list")
	echo "$raw $comp $n"
}

main() {
	echo "# delta: $(date -u +%FT%TZ), $(machine)"
	echo "# $(load) (start)"
	echo "# pairs: $CACHE/v{1,2}.{ext4,tar} (bench/dedup.sh); shoal diff --delta --level $LEVEL --max-ref $MAX_REF;" \
		"casync $(casync --version | awk '{ print $2 }'), zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n1)"
	echo
	printf '| pair | new chunks raw | whole objects | shoal with deltas (deltas / whole) | + delta index | casync new raw (compressed) | zstd -3 --patch-from | shoal / zstd | (with index) |\n'
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	TIMES=()
	for kind in ext4 tar; do
		v1="$CACHE/v1.$kind" v2="$CACHE/v2.$kind"
		"$SHOAL" chunk "$v1" -o "$W/$kind.v1.idx" >/dev/null
		"$SHOAL" chunk "$v2" -o "$W/$kind.v2.idx" >/dev/null
		warm "$v1"
		warm "$v2"
		local la st zt
		la=$(load)
		st=$(timed "$W/$kind.delta" "$SHOAL" diff "$W/$kind.v1.idx" "$W/$kind.v2.idx" --delta "$v1" "$v2" \
			--level "$LEVEL" --max-ref "$MAX_REF" --json)
		local j="$W/$kind.delta.out"
		nb=$(jsonnum new_bytes <"$j") wb=$(jsonnum whole_compressed_bytes <"$j") db=$(jsonnum delta_bytes <"$j")
		ib=$(jsonnum delta_index_bytes <"$j") nd=$(jsonnum deltas <"$j") kw=$(jsonnum kept_whole <"$j")
		read -r craw ccomp _ < <(casync_growth "$kind")
		# zstd --long=31 allows a 2 GiB window; decoding needs it too. The
		# round trip is checked.
		zt=$(timed "$W/$kind.zstd" zstd -q -f -3 --long=31 --patch-from="$v1" "$v2" -o "$W/$kind.patch.zst")
		zstd -q -d -f --long=31 --patch-from="$v1" "$W/$kind.patch.zst" -o "$W/$kind.v2.check"
		cmp -s "$W/$kind.v2.check" "$v2" || { echo "delta.sh: zstd patch round trip failed for $kind" >&2; exit 1; }
		rm -f "$W/$kind.v2.check"
		zb=$(stat -c %s "$W/$kind.patch.zst")
		printf '| %s | %d | %d | %d (%d / %d) | %d | %d (%d) | %d | %s | %s |\n' "$kind" "$nb" "$wb" "$db" "$nd" "$kw" \
			"$((db + ib))" "$craw" "$ccomp" "$zb" "$(div "$db" "$zb")" "$(div "$((db + ib))" "$zb")"
		TIMES+=("$kind $st $zt $la")
	done
	echo
	echo "Publisher: wall seconds and peak RSS (/usr/bin/time -v), images in the page cache."
	echo
	printf '| pair | shoal diff --delta: wall, CPU, peak RSS | zstd -3 --long=31 --patch-from: wall, CPU, peak RSS | wall shoal / zstd | CPU shoal / zstd | load average before |\n'
	printf '|---|---:|---:|---:|---:|---|\n'
	for t in "${TIMES[@]}"; do
		# shellcheck disable=SC2086 # split the fields on purpose
		set -- $t
		printf '| %s | %.2f s, %.2f s, %d MiB | %.2f s, %.2f s, %d MiB | %s | %s | %s |\n' "$1" "$2" "$4" "$(($3 / 1024))" \
			"$5" "$7" "$(($6 / 1024))" "$(div "$2" "$5")" "$(div "$4" "$7")" "${*:8}"
	done
	echo
	echo "# $(load) (end)"
	echo "# work files (indexes, JSON, stores, patches, time reports): $W"
}

main "$@"
