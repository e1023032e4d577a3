#!/usr/bin/env bash
# bench/swarm-serve.sh [N] [SIZE]: issue 8's second target.
#
# One `shoal node run` daemon (a cache node whose store was seeded with
# `shoal bundle import`, no origin) serves a SIZE release (default 256 MiB,
# a generated image) to N downloaders (default 50) at once. The
# downloaders are N device nodes inside one Go process (bench/swarmdrv
# fleet): each has its own libp2p host, store, identity and file-backed
# device with sparse slots, bootstrapped to the server; 50 daemon processes
# would not fit two cores. So the server runs alone in its process and its
# peak RSS (VmHWM) is its own. Once all are connected, the server is asked
# to announce the release (`POST /announce`, what `shoal node announce`
# does); every device verifies it, takes the index and the chunks (from
# the server, and from each other as they arrive: they are LAN peers),
# writes, fsyncs and re-verifies its slot and flips; then each reboots and
# boot-checks, which commits. `seconds` is from the announcement to the
# last flip; `committed` counts devices whose boot-check committed.
#
# Disk: every device writes SIZE bytes into one sparse slot; the script
# checks that N x SIZE fits in the free space of BENCH_DIR and deletes the
# devices afterwards.
# Env: BENCH_DIR (/tmp/shoal-bench), SHOAL (built into bin/shoal unless set).
# Last line: one JSON object: downloaders, committed, server_peak_rss_bytes,
# seconds, and more. Target: server peak RSS < 256 MiB, all commit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

main() {
	N=${1:-50}
	SIZE=$(numfmt --from=iec "${2:-256M}")
	swarm_workdir swarm-serve
	SPID=
	trap '[ -z "$SPID" ] || kill "$SPID" 2>/dev/null || true' EXIT
	cd "$W"

	need_kib=$((N * SIZE / 1024 * 11 / 10))
	free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
	if [ "$need_kib" -gt "$free_kib" ]; then
		echo "swarm-serve.sh: $N devices x $SIZE bytes need $((need_kib >> 20)) GiB, $((free_kib >> 20)) GiB free in $W" >&2
		exit 1
	fi
	# The stamp names the store layout too: a server store prepared by an
	# older build would be migrated at the server's start, and the
	# migration's reads would count in the measured RSS.
	stamp="$SIZE store-layout-2"
	if [ "$(cat stamp 2>/dev/null)" != "$stamp" ]; then
		echo "== preparing a $SIZE-byte release (not timed)" >&2
		rm -rf img keys repo bundle.tar server stamp
		(cd "$OLDPWD" && go run ./scripts/mkimage -size "$SIZE" -seed 7 -o "$W/img")
		"$SHOAL" keys init keys >/dev/null
		"$SHOAL" publish --repo repo --keys keys --channel stable --version 1 rootfs=img >/dev/null
		"$SHOAL" bundle create --repo repo --channel stable -o bundle.tar >/dev/null
		"$SHOAL" bundle import bundle.tar --store server/store/chunks --root keys/root.json >/dev/null
		echo "$stamp" >stamp
	fi
	rm -rf server/store/trust fleet server.log fleet.log rss.samples
	cat >server.toml <<-TOML
		[node]
		fleet = "bench"
		store = "server/store"
		listen = ["/ip4/127.0.0.1/tcp/0"]
		mdns = false
		lan_prefixes = ["127.0.0.0/8"]
		api = "127.0.0.1:18711"
		channels = ["stable"]
		[trust]
		root = "keys/root.json"
	TOML
	START=$(date -u +%FT%TZ)
	LOAD_BEFORE=$(load)
	"$SHOAL" node run --config server.toml --log-level warn 2>server.log &
	SPID=$!
	for _ in $(seq 300); do
		"$SHOAL" node status --api 127.0.0.1:18711 --json 2>/dev/null | grep -q '"addrs": \[' && break
		sleep 0.1
	done
	server=$("$SHOAL" node status --api 127.0.0.1:18711 --json | grep -o '/ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' | head -1)
	# The server's resident set, sampled every 0.5 s, for the record (the
	# peak is VmHWM, read at the end).
	(while kill -0 "$SPID" 2>/dev/null; do
		awk -v t="$EPOCHREALTIME" '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { if (r) print t, r, a, f }' "/proc/$SPID/status" 2>/dev/null
		sleep 0.5
	done >rss.samples) &
	"$W/swarmdrv" fleet -n "$N" -bootstrap "$server" -announce-api 127.0.0.1:18711 -repo "$W/repo" \
		-root keys/root.json -dir fleet -slot $((SIZE + (64 << 20))) >fleet.json 2>fleet.log || {
		tail -n 20 fleet.log >&2
		exit 1
	}
	LOAD_AFTER=$(load)
	peak=$(awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$SPID/status")
	served=$("$SHOAL" node status --api 127.0.0.1:18711 --json | grep -A3 '"served"' | grep -o '"bytes": *[0-9]*' | grep -o '[0-9]*$')
	kill -TERM "$SPID"
	wait "$SPID" || true
	SPID=
	rm -rf fleet

	field() { grep -o "\"$1\": *[-0-9.e+]*" fleet.json | head -n1 | sed 's/.*: *//'; }
	committed=$(field committed)
	flipped=$(field flipped)
	secs=$(field seconds)
	first=$(field first_flip_seconds)
	bysrc=$(grep -o '"bytes_by_source": *{[^}]*}' fleet.json | sed 's/^"bytes_by_source": *//')
	met=$(awk -v p="$peak" -v c="$committed" -v n="$N" 'BEGIN { print (p < 268435456 && c == n ? "true" : "false") }')
	echo "# swarm-serve: $START to $(date -u +%FT%TZ), $(machine)"
	echo "# $N downloaders (in-process device nodes), $SIZE bytes; before: $LOAD_BEFORE; after: $LOAD_AFTER"
	echo "flipped $flipped, committed $committed of $N; first flip $first s, last $secs s after the announcement"
	anon=$(awk 'BEGIN { m = 0 } $3 > m { m = $3 } END { print m * 1024 }' rss.samples)
	file=$(awk 'BEGIN { m = 0 } $4 > m { m = $4 } END { print m * 1024 }' rss.samples)
	echo "server peak RSS $(div "$peak" 1048576 1) MiB (VmHWM; target < 256 MiB); of the samples every 0.5 s, the most anonymous memory was $(div "$anon" 1048576 1) MiB and the most mapped file pages (RssFile: the binary, badger's tables and logs) $(div "$file" 1048576 1) MiB"
	echo "RSS every 5 s, MiB (total/anon/file): $(awk 'NR % 10 == 1 { printf "%.0f/%.0f/%.0f ", $2 / 1024, $3 / 1024, $4 / 1024 }' rss.samples)" | fold -s -w 160
	echo "server served $(div "$served" 1048576 1) MiB; the devices received by source: $bysrc"
	grep -o '"errors": *\[[^]]*\]' fleet.json || true
	printf '{"downloaders": %d, "committed": %d, "flipped": %d, "server_peak_rss_bytes": %d, "server_peak_anon_bytes": %d, "server_peak_file_bytes": %d, "seconds": %s, "first_flip_seconds": %s, "bytes": %d, "server_served_bytes": %d, "bytes_by_source": %s, "target_rss_bytes": 268435456, "met": %s}\n' \
		"$N" "$committed" "$flipped" "$peak" "$anon" "$file" "$secs" "$first" "$SIZE" "$served" "$bysrc" "$met"
}

main "$@"
