#!/usr/bin/env bash
# bench/swarm-loopback.sh [SIZE] [RUNS]: issue 8's first target.
#
# Two `shoal node run` daemons on loopback move a SIZE release (default
# 1 GiB, a generated image) from one to the other: a holder (a cache node
# whose store was seeded with `shoal bundle import`, as a site gateway
# seeded from a USB stick is) and a device node with a fresh file-backed
# device (`shoal device init`, sparse slots) and no origin. Timed: from
# `shoal node announce` (the holder publishes the release on gossipsub) to
# the device's flip ("tentative": the updater has verified the
# announcement, fetched the index from the holder, taken every chunk over
# /shoal/chunks/1 - each hashed on arrival -, written them into the
# inactive slot, fsynced, re-read and checked every chunk against the
# signed Merkle root, and switched the boot slot). Against: bench/tcpcopy,
# the same bytes over one plain TCP connection on loopback into a file,
# fsynced. Runs alternate; medians of RUNS (default 3) are compared.
# After each swarm run the device reboots and `shoal update boot-check`
# must commit, and the slot must equal the image byte for byte (untimed).
#
# SIZE: bytes, or with a suffix numfmt --from=iec reads (512M, 1G).
# Env: BENCH_DIR (/tmp/shoal-bench), SHOAL (built into bin/shoal unless set),
# BENCH_PROFILE=1 (each node writes a CPU profile, holder.prof and dev.prof
# in the work directory).
# Last line: one JSON object: bytes, swarm_seconds, tcp_seconds, ratio (TCP
# time over swarm time; target >= 0.70), and more.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

main() {
	SIZE=$(numfmt --from=iec "${1:-1G}")
	RUNS=${2:-3}
	swarm_workdir swarm-loopback
	go build -o "$W/tcpcopy" ./bench/tcpcopy
	NODE_PIDS=()
	trap 'for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
	cd "$W"

	# The release, once per size: image, keys, repository, bundle, and the
	# holder's store seeded from the bundle.
	if [ "$(cat stamp 2>/dev/null)" != "$SIZE" ]; then
		echo "== preparing a $SIZE-byte release (not timed)" >&2
		rm -rf img keys repo bundle.tar holder stamp
		(cd "$OLDPWD" && go run ./scripts/mkimage -size "$SIZE" -seed 7 -o "$W/img")
		"$SHOAL" keys init keys >/dev/null
		"$SHOAL" publish --repo repo --keys keys --channel stable --version 1 rootfs=img >/dev/null
		"$SHOAL" bundle create --repo repo --channel stable -o bundle.tar >/dev/null
		"$SHOAL" bundle import bundle.tar --store holder/store/chunks --root keys/root.json >/dev/null
		echo "$SIZE" >stamp
	fi
	cat >holder.toml <<-TOML
		[node]
		fleet = "bench"
		store = "holder/store"
		listen = ["/ip4/127.0.0.1/tcp/0"]
		mdns = false
		lan_prefixes = ["127.0.0.0/8"]
		api = "127.0.0.1:18701"
		channels = ["stable"]
		[trust]
		root = "keys/root.json"
	TOML
	warm img
	: >t_swarm
	: >t_xfer
	: >t_tcp
	: >rss
	: >mem
	COMMITTED=0
	START=$(date -u +%FT%TZ)
	LOAD_BEFORE=$(load)
	for ((i = 1; i <= RUNS; i++)); do
		echo "== run $i/$RUNS: swarm" >&2
		swarm_run
		echo "== run $i/$RUNS: tcp" >&2
		"$W/tcpcopy" -in img -out tcp.out >tcp.json
		jsonfield seconds <tcp.json >>t_tcp
		rm -f tcp.out
	done
	LOAD_AFTER=$(load)

	ts=$(median <t_swarm)
	tx=$(median <t_xfer)
	tt=$(median <t_tcp)
	ratio=$(div "$tt" "$ts" 3)
	read -r hrss drss < <(sort -k1,1n rss | awk '{ if ($1 > h) h = $1; if ($2 > d) d = $2 } END { print h, d }')
	met=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.70 ? "true" : "false") }')
	echo "# swarm-loopback: $START to $(date -u +%FT%TZ), $(machine)"
	echo "# $SIZE bytes, $RUNS runs each, alternating; before: $LOAD_BEFORE; after: $LOAD_AFTER"
	echo "swarm (announce -> flip), s:        $(tr '\n' ' ' <t_swarm) median $ts ($(div "$SIZE" "$(awk -v s="$ts" 'BEGIN { print s * 1e6 }')" 0) MB/s)"
	echo "swarm (transfer start -> flip), s:  $(tr '\n' ' ' <t_xfer) median $tx"
	echo "tcp copy + fsync, s:                $(tr '\n' ' ' <t_tcp) median $tt ($(div "$SIZE" "$(awk -v s="$tt" 'BEGIN { print s * 1e6 }')" 0) MB/s)"
	echo "ratio tcp/swarm = $ratio (target >= 0.70: $([ "$met" = true ] && echo met || echo NOT met))"
	echo "at each flip (RSS now, CPU used since start):"
	sed 's/^/  /' mem
	echo "peak RSS: holder $(div "$hrss" 1048576 1) MiB, device node $(div "$drss" 1048576 1) MiB; committed $COMMITTED of $RUNS"
	printf '{"bytes": %d, "swarm_seconds": %s, "tcp_seconds": %s, "ratio": %s, "target": 0.70, "met": %s, "runs": %d, "swarm_transfer_seconds": %s, "committed": %d, "holder_peak_rss_bytes": %d, "device_node_peak_rss_bytes": %d}\n' \
		"$SIZE" "$ts" "$tt" "$ratio" "$met" "$RUNS" "$tx" "$COMMITTED" "$hrss" "$drss"
}

# jsonfield NAME: the number after "NAME": in one line of JSON on stdin.
jsonfield() { grep -o "\"$1\": *[-0-9.e+]*" | head -n1 | sed 's/.*: *//'; }

# hwm PID: the process's peak resident set (VmHWM), bytes.
hwm() { awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$1/status"; }

# mem PID: "anon MiB, file MiB (mapped files: badger's value log), CPU s",
# now.
mem() {
	local cpu
	cpu=$(awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / t }' "/proc/$1/stat")
	awk -v c="$cpu" '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { printf "anon %.0f MiB, file %.0f MiB, CPU %s s\n", a / 1024, f / 1024, c }' "/proc/$1/status"
}

# wait_status API PATTERN WHAT: poll the node's status until PATTERN shows.
wait_status() {
	for _ in $(seq 300); do
		"$SHOAL" node status --api "$1" --json 2>/dev/null | grep -q "$2" && return 0
		sleep 0.1
	done
	echo "swarm-loopback.sh: timed out waiting for $3" >&2
	exit 1
}

# swarm_run: one transfer with fresh daemons and a fresh device; appends
# to t_swarm, t_xfer and rss.
swarm_run() {
	# The holder keeps its chunks and pins; its trust state (the newest
	# version it has seen) goes, so the announcement is news to it again.
	rm -rf holder/store/trust dev devstore dev.log holder.log
	"$SHOAL" device init dev --slot-size $((SIZE + (64 << 20))) --root keys/root.json --channel stable >/dev/null
	sync
	"$SHOAL" node run --config holder.toml --log-level info ${BENCH_PROFILE:+--cpu-profile holder.prof} 2>holder.log &
	local hpid=$!
	NODE_PIDS+=("$hpid")
	wait_status 127.0.0.1:18701 '"addrs": \[' "the holder to start"
	local holder
	holder=$("$SHOAL" node status --api 127.0.0.1:18701 --json | grep -o '/ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' | head -1)
	cat >dev.toml <<-TOML
		[node]
		fleet = "bench"
		store = "devstore"
		listen = ["/ip4/127.0.0.1/tcp/0"]
		bootstrap = ["$holder"]
		mdns = false
		dht = "client"
		lan_prefixes = ["127.0.0.0/8"]
		api = "127.0.0.1:18702"
		[device]
		config = "dev/shoal.toml"
	TOML
	"$SHOAL" node run --config dev.toml --log-level info ${BENCH_PROFILE:+--cpu-profile dev.prof} 2>dev.log &
	local dpid=$!
	NODE_PIDS+=("$dpid")
	wait_status 127.0.0.1:18702 '"class": "lan"' "the device node to meet the holder"
	sleep 1.5 # the gossip mesh forms at its first heartbeat
	"$W/swarmdrv" watch -api 127.0.0.1:18702 -timeout 20m >watch.json &
	local wpid=$!
	local t0
	t0=$(now)
	"$SHOAL" node announce --api 127.0.0.1:18701 --repo "$W/repo" >/dev/null
	wait "$wpid"
	local flip start
	flip=$(jsonfield flip <watch.json)
	start=$(jsonfield transfer_start <watch.json)
	awk -v a="$t0" -v b="$flip" 'BEGIN { printf "%.3f\n", b - a }' >>t_swarm
	awk -v a="$start" -v b="$flip" 'BEGIN { printf "%.3f\n", b - a }' >>t_xfer
	echo "$(hwm "$hpid") $(hwm "$dpid")" >>rss
	echo "holder: $(mem "$hpid"); device node: $(mem "$dpid")" >>mem
	kill -TERM "$hpid" "$dpid"
	wait "$hpid" "$dpid" || true
	NODE_PIDS=()
	# Untimed: the device reboots into the new slot and commits, and the
	# slot holds the image.
	"$SHOAL" device reboot --config dev/shoal.toml >/dev/null
	if "$SHOAL" update boot-check --config dev/shoal.toml >/dev/null && cmp -n "$SIZE" img dev/slot-b.img; then
		COMMITTED=$((COMMITTED + 1))
	else
		echo "swarm-loopback.sh: run did not commit, or slot B differs from the image" >&2
	fi
}

main "$@"
