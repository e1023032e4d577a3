#!/usr/bin/env bash
# bench/compare-casync.sh: throughput of `shoal chunk` against `casync make`
# with the same chunk sizes (16/64/256 KiB) and against the hash-only ceiling
# (bench/hashceiling: SHA-256 over the same bytes on all cores, no chunking),
# all on the same file in the same run; plus the peak RSS of `shoal chunk` on
# that file, on a 4 GiB file and on a 16 GiB stream.
#
# Usage: bench/compare-casync.sh [FILE] [RUNS]
#   FILE  default: a generated 1 GiB image, cached as $BENCH_DIR/img1g
#         (also try the dedup image: /tmp/shoal-dedup/v1.ext4)
#   RUNS  default 5; the tools run alternately, in a rotating order, and
#         the median wall time of each is reported
# Env:   SHOAL (built from ./cmd/shoal into $BENCH_DIR unless set),
#        BENCH_DIR (/tmp/shoal-bench), BIG_SIZE (4294967296: a second file
#        for the RSS check; 0 skips it), STREAM_SIZE (17179869184: bytes
#        generated and piped into `shoal chunk /dev/stdin` for the RSS
#        check, no disk used; 0 skips it)
#
# What is timed (wall clock of the whole process, file in the page cache):
#   shoal          shoal chunk FILE -o OUT.idx      (cut + SHA-256 + index, all cores)
#   ceiling        hashceiling FILE                 (read + SHA-256 in 4 MiB blocks, all cores)
#   casync         casync make --chunk-size=16384:65536:262144 --store=EMPTY OUT.caibx FILE
#                  (cut + SHA-512/256 + zstd-compress and write every chunk: casync's
#                  default; zstd is its fastest compressor and it has no "none")
#   casync-nowrite the same into a store that already holds every chunk: casync then
#                  only tests that each chunk file exists, so nothing is compressed
#                  or written. This is the closest casync gets to what shoal chunk
#                  does (shoal chunk writes no chunk files).
#   casync-sha256  casync-nowrite with --digest=sha256, the hash shoal uses.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

# main runs once the whole file is parsed, so editing the script while it
# runs cannot change what it does.
main() {
	D=${BENCH_DIR:-/tmp/shoal-bench}
	BIG_SIZE=${BIG_SIZE:-4294967296}
	STREAM_SIZE=${STREAM_SIZE:-17179869184}
	CHUNK=16384:65536:262144
	mkdir -p "$D"
	need casync go /usr/bin/time
	if [ -z "${SHOAL:-}" ]; then
		SHOAL="$D/shoal"
		go build -o "$SHOAL" ./cmd/shoal
	fi
	CEILING="$D/hashceiling"
	IDXSTAT="$D/idxstat"
	go build -o "$CEILING" ./bench/hashceiling
	go build -o "$IDXSTAT" ./bench/idxstat

	FILE=${1:-}
	RUNS=${2:-5}
	if [ -z "$FILE" ]; then
		FILE="$D/img1g"
		if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" != 1073741824 ]; then
			echo "== generating $FILE (1 GiB)" >&2
			go run ./scripts/mkimage -size 1073741824 -o "$FILE.tmp"
			mv "$FILE.tmp" "$FILE"
		fi
	fi
	[ -f "$FILE" ] || { echo "compare-casync.sh: $FILE: no such file" >&2; exit 1; }
	SIZE=$(stat -c %s "$FILE")

	# Stores that already hold every chunk of FILE, for the no-write variants.
	# Refilled when FILE's path, size or mtime changes.
	stamp="$FILE $SIZE $(stat -c %Y "$FILE")"
	if [ "$(cat "$D/warm.stamp" 2>/dev/null)" != "$stamp" ]; then
		echo "== filling the warm casync stores (not timed)" >&2
		rm -rf "$D/warm.castr" "$D/warm256.castr"
		casync make --chunk-size=$CHUNK --store="$D/warm.castr" "$D/warm.caibx" "$FILE" >/dev/null
		casync make --chunk-size=$CHUNK --digest=sha256 --store="$D/warm256.castr" "$D/warm256.caibx" "$FILE" >/dev/null
		echo "$stamp" >"$D/warm.stamp"
	fi

	TOOLS=(shoal ceiling casync casync-nowrite casync-sha256)
	# cmd_of TOOL: set CMD to TOOL's command line.
	cmd_of() {
		case $1 in
		shoal) CMD=("$SHOAL" chunk "$FILE" -o "$D/out.idx") ;;
		ceiling) CMD=("$CEILING" "$FILE") ;;
		casync) CMD=(casync make --chunk-size=$CHUNK --store="$D/cold.castr" "$D/cold.caibx" "$FILE") ;;
		casync-nowrite) CMD=(casync make --chunk-size=$CHUNK --store="$D/warm.castr" "$D/nowrite.caibx" "$FILE") ;;
		casync-sha256) CMD=(casync make --chunk-size=$CHUNK --digest=sha256 --store="$D/warm256.castr" "$D/nowrite256.caibx" "$FILE") ;;
		esac
	}

	# timed TOOL: run TOOL once; append "wall_s maxrss_kib cpu_s" to $D/TOOL.runs.
	timed() {
		local t0 t1 rss usr sys
		cmd_of "$1"
		[ "$1" != casync ] || rm -rf "$D/cold.castr" # an empty store every run (not timed)
		t0=$(now)
		/usr/bin/time -f '%M %U %S' -o "$D/$1.time" "${CMD[@]}" >/dev/null
		t1=$(now)
		read -r rss usr sys <"$D/$1.time"
		awk -v a="$t0" -v b="$t1" -v r="$rss" -v u="$usr" -v s="$sys" 'BEGIN { printf "%.4f %d %.2f\n", b - a, r, u + s }' >>"$D/$1.runs"
	}

	echo "== warming $FILE into the page cache" >&2
	warm "$FILE"
	for t in "${TOOLS[@]}"; do rm -f "$D/$t.runs"; done
	START=$(date -u +%FT%TZ)
	LOAD_BEFORE=$(load)
	for ((i = 0; i < RUNS; i++)); do
		n=${#TOOLS[@]}
		for ((k = 0; k < n; k++)); do
			t=${TOOLS[$(((i + k) % n))]}
			echo "== run $((i + 1))/$RUNS: $t" >&2
			timed "$t"
		done
	done
	LOAD_AFTER=$(load)

	# Sanity: the chunkings being compared are alike (same sizes, same file).
	"$SHOAL" inspect --json "$D/out.idx" >"$D/out.inspect.json"
	"$IDXSTAT" stats "$D/cold.caibx" >"$D/cold.stats.json"

	echo "# compare-casync: $START to $(date -u +%FT%TZ), $(machine)"
	echo "# file $FILE, $SIZE bytes, $RUNS runs per tool, alternating"
	echo "# before: $LOAD_BEFORE"
	echo "# after:  $LOAD_AFTER"
	echo "# shoal:  $(jsonnum chunks <"$D/out.inspect.json") chunks, avg $(jsonnum avg_chunk <"$D/out.inspect.json") B"
	echo "# casync: $(jsonnum chunks <"$D/cold.stats.json") chunks, avg $(jsonnum avg_chunk <"$D/cold.stats.json") B ($(casync --version))"
	echo
	echo "| tool | median wall s | MB/s | CPU s (median) | peak RSS MiB (max) | all wall s |"
	echo "|---|---:|---:|---:|---:|---|"
	declare -A MED
	for t in "${TOOLS[@]}"; do
		MED[$t]=$(awk '{ print $1 }' "$D/$t.runs" | median)
		cpu=$(awk '{ print $3 }' "$D/$t.runs" | median)
		rss=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.1f", m / 1024 }' "$D/$t.runs")
		all=$(awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }' "$D/$t.runs")
		printf '| %s | %.3f | %.0f | %.2f | %s | %s |\n' "$t" "${MED[$t]}" \
			"$(div "$SIZE" "$(awk -v s="${MED[$t]}" 'BEGIN { print s * 1e6 }')" 1)" "$cpu" "$rss" "$all"
	done
	echo
	# Throughput ratios are inverse ratios of the median wall times.
	r_casync=$(div "${MED[casync]}" "${MED[shoal]}")
	r_nowrite=$(div "${MED[casync-nowrite]}" "${MED[shoal]}")
	r_sha=$(div "${MED[casync-sha256]}" "${MED[shoal]}")
	r_ceil=$(div "${MED[ceiling]}" "${MED[shoal]}" 3)
	verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v >= t ? "met" : "NOT met") }'; }
	echo "shoal / casync make (empty store, zstd):       ${r_casync}x   (target >= 10x: $(verdict "$r_casync" 10))"
	echo "shoal / casync make (no chunk writes):         ${r_nowrite}x"
	echo "shoal / casync make (no writes, sha256):       ${r_sha}x"
	echo "shoal / hash-only ceiling:                     $(awk -v r="$r_ceil" 'BEGIN { printf "%.1f%%", r * 100 }')   (target >= 60%: $(verdict "$r_ceil" 0.6))"

	# Peak RSS on larger inputs: FILE, a generated BIG_SIZE file, and a
	# STREAM_SIZE image generated on the fly and piped in (no disk needed).
	rss_of() { sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1"; }
	rss_row() { # NAME BYTES TIMEFILE T0 T1
		printf '| %s | %d | %s | %.1f | %.2f |\n' "$1" "$2" "$(jsonnum chunks <"$D/rss.inspect.json")" \
			"$(div "$(rss_of "$3")" 1024 1)" "$(awk -v a="$4" -v b="$5" 'BEGIN { print b - a }')"
	}
	echo
	echo "| input | bytes | chunks | shoal chunk peak RSS MiB | wall s |"
	echo "|---|---:|---:|---:|---:|"
	inputs=("$FILE")
	if [ "$BIG_SIZE" != 0 ]; then
		BIG="$D/img-big-$BIG_SIZE"
		if [ ! -f "$BIG" ]; then
			echo "== generating $BIG" >&2
			go run ./scripts/mkimage -size "$BIG_SIZE" -seed 2 -o "$BIG.tmp"
			mv "$BIG.tmp" "$BIG"
		fi
		warm "$BIG"
		inputs+=("$BIG")
	fi
	for f in "${inputs[@]}"; do
		t0=$(now)
		/usr/bin/time -v "$SHOAL" chunk "$f" -o "$D/rss.idx" >/dev/null 2>"$D/rss.time"
		t1=$(now)
		"$SHOAL" inspect --json "$D/rss.idx" >"$D/rss.inspect.json"
		rss_row "$(basename "$f")" "$(stat -c %s "$f")" "$D/rss.time" "$t0" "$t1"
	done
	if [ "$STREAM_SIZE" != 0 ]; then
		echo "== streaming a generated $STREAM_SIZE-byte image into shoal chunk /dev/stdin" >&2
		go build -o "$D/mkimage-stream" ./scripts/mkimage
		t0=$(now)
		# mkimage ends by truncating its output, which fails on a pipe after all
		# bytes are written; the byte count of the index is checked below.
		{ "$D/mkimage-stream" -size "$STREAM_SIZE" -seed 3 -o /dev/stdout 2>/dev/null || true; } |
			/usr/bin/time -v "$SHOAL" chunk /dev/stdin -o "$D/rss.idx" >/dev/null 2>"$D/rss.time"
		t1=$(now)
		"$SHOAL" inspect --json "$D/rss.idx" >"$D/rss.inspect.json"
		got=$(jsonnum bytes <"$D/rss.inspect.json")
		[ "$got" = "$STREAM_SIZE" ] || { echo "compare-casync.sh: stream gave $got bytes, want $STREAM_SIZE" >&2; exit 1; }
		rss_row "stream: mkimage piped into shoal chunk /dev/stdin" "$STREAM_SIZE" "$D/rss.time" "$t0" "$t1"
	fi
	echo
	echo "peak RSS target: < 64 MiB for an input of any size"
}

main "$@"
