#!/usr/bin/env bash
# bench/swarm-latency.sh [RUNS] [SIZE]: issue 8's third target, the time
# from `shoal publish` plus one announcement to the first chunk requested
# by a node on the LAN.
#
# A site on loopback, fresh each run: an HTTP origin serving the
# repository (bench/swarmdrv origin, which records the time of the first
# request of each kind: metadata, index, chunks), a site gateway (a cache
# node, `shoal node run`, whose [node] origin is that URL) and a device
# node (`shoal node run`, a fresh `shoal device init` device, bootstrapped
# to the gateway, no origin: the demo's site). Once they are connected,
# `shoal publish` writes version RUN of a SIZE image (default 256 MiB) and,
# as soon as it returns, `shoal node announce` has the gateway announce it.
# Zero is the end of `shoal publish` (the release exists; publishing takes
# as long as the image needs, so it is reported apart). Measured:
#   first chunk request   the origin receives its first GET of chunks/*
#                         (the gateway's, after the exchange's OriginDelay)
#   device transfer       the device node's status first shows the download
#                         (announcement verified, index taken from the
#                         gateway, its Have sent; polled every 5 ms)
#   device first chunk    the device's status first shows a chunk held
# The target (< 2 s) is checked on the first chunk request; the device's
# first chunk is an upper bound on its own first request.
# Env: BENCH_DIR (/tmp/shoal-bench), SHOAL (built into bin/shoal unless set).
# Last line: one JSON object (medians over RUNS, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

main() {
	RUNS=${1:-5}
	SIZE=$(numfmt --from=iec "${2:-256M}")
	swarm_workdir swarm-latency
	PIDS=()
	trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
	cd "$W"
	if [ "$(stat -c %s img 2>/dev/null)" != "$SIZE" ]; then
		(cd "$OLDPWD" && go run ./scripts/mkimage -size "$SIZE" -seed 7 -o "$W/img")
	fi
	rm -rf keys repo
	"$SHOAL" keys init keys >/dev/null
	warm img
	: >t_req
	: >t_xfer
	: >t_held
	: >t_pub
	START=$(date -u +%FT%TZ)
	LOAD_BEFORE=$(load)
	for ((i = 1; i <= RUNS; i++)); do
		echo "== run $i/$RUNS" >&2
		one_run "$i"
	done
	LOAD_AFTER=$(load)
	req=$(median <t_req)
	xfer=$(median <t_xfer)
	held=$(median <t_held)
	pub=$(median <t_pub)
	met=$(awk -v r="$req" 'BEGIN { print (r < 2 ? "true" : "false") }')
	echo "# swarm-latency: $START to $(date -u +%FT%TZ), $(machine)"
	echo "# $RUNS runs, $SIZE-byte image; before: $LOAD_BEFORE; after: $LOAD_AFTER"
	echo "shoal publish, s:                                $(tr '\n' ' ' <t_pub) median $pub"
	echo "publish end -> first chunk request (origin), s:  $(tr '\n' ' ' <t_req) median $req (target < 2 s: $([ "$met" = true ] && echo met || echo NOT met))"
	echo "publish end -> device transfer starts, s:        $(tr '\n' ' ' <t_xfer) median $xfer"
	echo "publish end -> device holds its first chunk, s:  $(tr '\n' ' ' <t_held) median $held"
	printf '{"runs": %d, "first_chunk_request_seconds": %s, "device_transfer_start_seconds": %s, "device_first_chunk_seconds": %s, "publish_seconds": %s, "target_seconds": 2, "met": %s}\n' \
		"$RUNS" "$req" "$xfer" "$held" "$pub" "$met"
}

status() { "$SHOAL" node status --api "$1" --json 2>/dev/null || true; }
wait_status() {
	for _ in $(seq 300); do status "$1" | grep -q "$2" && return 0; sleep 0.1; done
	echo "swarm-latency.sh: timed out waiting for $3" >&2
	exit 1
}
jsonfield() { grep -o "\"$1\": *[-0-9.e+]*" | head -n1 | sed 's/.*: *//'; }

one_run() {
	local v=$1
	rm -rf gw dev devstore events ./*.log
	mkdir -p repo
	"$W/swarmdrv" origin -dir repo -listen 127.0.0.1:0 -events events >origin.addr 2>origin.log &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s origin.addr ] && break; sleep 0.05; done
	local origin
	origin=http://$(cat origin.addr)/
	cat >gw.toml <<-TOML
		[node]
		fleet = "bench"
		store = "gw"
		listen = ["/ip4/127.0.0.1/tcp/0"]
		mdns = false
		lan_prefixes = ["127.0.0.0/8"]
		api = "127.0.0.1:18721"
		origin = ["$origin"]
		channels = ["stable"]
		[trust]
		root = "keys/root.json"
	TOML
	"$SHOAL" node run --config gw.toml --log-level info 2>gw.log &
	PIDS+=($!)
	wait_status 127.0.0.1:18721 '"addrs": \[' "the gateway to start"
	local gw
	gw=$(status 127.0.0.1:18721 | grep -o '/ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' | head -1)
	"$SHOAL" device init dev --slot-size $((SIZE + (64 << 20))) --root keys/root.json --channel stable >/dev/null
	cat >dev.toml <<-TOML
		[node]
		fleet = "bench"
		store = "devstore"
		listen = ["/ip4/127.0.0.1/tcp/0"]
		bootstrap = ["$gw"]
		mdns = false
		dht = "client"
		lan_prefixes = ["127.0.0.0/8"]
		api = "127.0.0.1:18722"
		[device]
		config = "dev/shoal.toml"
	TOML
	"$SHOAL" node run --config dev.toml --log-level info 2>dev.log &
	PIDS+=($!)
	wait_status 127.0.0.1:18722 '"class": "lan"' "the device node to meet the gateway"
	sleep 1.5 # the gossip mesh forms at its first heartbeat
	"$W/swarmdrv" watch -api 127.0.0.1:18722 -until-held -every 5ms -timeout 2m >watch.json &
	local wpid=$!
	local t0 t1
	t0=$(now)
	"$SHOAL" publish --repo repo --keys keys --channel stable --version "$v" rootfs=img >/dev/null
	t1=$(now)
	"$SHOAL" node announce --api 127.0.0.1:18721 --repo "$origin" >/dev/null
	wait "$wpid"
	for _ in $(seq 100); do grep -q ' chunks ' events && break; sleep 0.05; done
	local req
	req=$(awk '$2 == "chunks" { print $1; exit }' events)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>t_pub
	awk -v a="$t1" -v b="$req" 'BEGIN { printf "%.3f\n", b - a }' >>t_req
	awk -v a="$t1" -v b="$(jsonfield transfer_start <watch.json)" 'BEGIN { printf "%.3f\n", b - a }' >>t_xfer
	awk -v a="$t1" -v b="$(jsonfield first_held <watch.json)" 'BEGIN { printf "%.3f\n", b - a }' >>t_held
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}

main "$@"
