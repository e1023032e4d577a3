#!/usr/bin/env bash
# make demo: the main job end to end on this machine, with embedded
# defaults. make demo builds bin/shoal first; everything is written under
# demo-out/ (recreated on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHOAL=${SHOAL:-$PWD/bin/shoal}
OUT=${DEMO_OUT:-$PWD/demo-out}
SIZE=${DEMO_SIZE:-268435456}   # 256 MiB images
PORT=${DEMO_PORT:-18631}
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
expect_fail() {
  printf '$ %s\n' "$*"
  if "$@"; then echo "demo: expected this to fail" >&2; exit 1; fi
  echo "(rejected, as it must be)"
}

SERVER_PID=
NODE_PIDS=()
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

step "1. Make a v1 image and a v2 with a few changed regions ($((SIZE >> 20)) MiB each)"
(cd "$ROOT" && go build -o "$OUT/mkimage" ./scripts/mkimage)
run ./mkimage -o v1.img -size "$SIZE" -seed 7
run ./mkimage -o v2.img -size "$SIZE" -seed 7 -change 0.04
rm mkimage

step "2. Chunk both (FastCDC 16/64/256 KiB, sha2-256) and see what v1 -> v2 downloads"
run "$SHOAL" chunk v1.img -o v1.idx
run "$SHOAL" chunk v2.img -o v2.idx
run "$SHOAL" diff v1.idx v2.idx

step "3. Create signing keys and publish v1 into a static repository"
run "$SHOAL" keys init keys
run "$SHOAL" publish --repo repo --keys keys --channel stable --version 1 rootfs=v1.img
cp -a repo repo-at-v1   # a mirror that will go stale: used for the rollback attack below

step "4. Serve the repository over HTTP and verify v1 as a device would"
"$SHOAL" serve --repo repo --listen 127.0.0.1:$PORT >serve.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
run "$SHOAL" verify --repo http://127.0.0.1:$PORT/ --root keys/root.json --state verifier-state --require-log

step "5. Publish v2 (only new chunks are written), verify it, and audit the transparency log"
run "$SHOAL" publish --repo repo --keys keys --channel stable --version 2 rootfs=v2.img
run "$SHOAL" log verify --repo repo --log-key keys/log.pub
run "$SHOAL" verify --repo http://127.0.0.1:$PORT/ --root keys/root.json --state verifier-state --require-log

step "6. A mirror replays the old, validly signed v1 metadata: the device refuses the rollback"
expect_fail "$SHOAL" verify --repo repo-at-v1 --root keys/root.json --state verifier-state

step "7. A virtual device (two 320 MiB slots, file boot adapter) installs v1 from the HTTP origin"
touch "$OUT/healthy"
run "$SHOAL" device init device --slot-size 320M --root keys/root.json --channel stable \
  --health-cmd "test -e $OUT/healthy" --health-deadline 3s
CFG=device/shoal.toml
# Pretend v2 does not exist yet: install v1 from the stale mirror.
run "$SHOAL" update apply --config $CFG --source repo-at-v1
run "$SHOAL" device reboot --config $CFG
run "$SHOAL" update boot-check --config $CFG
run "$SHOAL" update status --config $CFG

step "8. v2 with a failing health check: automatic rollback to v1"
rm "$OUT/healthy"
run "$SHOAL" update apply --config $CFG --source http://127.0.0.1:$PORT/
run "$SHOAL" device reboot --config $CFG
run "$SHOAL" update boot-check --config $CFG
run "$SHOAL" device reboot --config $CFG
run "$SHOAL" update boot-check --config $CFG   # at every boot, as packaging/systemd runs it
run "$SHOAL" update status --config $CFG
run "$SHOAL" update log verify --config $CFG

step "9. The health problem is fixed: the operator retries v2, and it commits"
touch "$OUT/healthy"
run "$SHOAL" update apply --config $CFG --source http://127.0.0.1:$PORT/ --retry-failed
run "$SHOAL" device reboot --config $CFG
run "$SHOAL" update boot-check --config $CFG
run "$SHOAL" update status --config $CFG --json

step "10. The swarm: a site gateway and two devices on loopback; v2 announced once"
# A site gateway (a cache node) reaches the origin; the two devices reach only
# the gateway (no [node] origin), which feeds them the index and every chunk
# over the LAN (127.0.0.0/8 counts as the LAN here).
# Each node's API takes a free port (api port 0) and records it in the node's
# store, where `node status --config` finds it.
conf() { if [ "$1" = 1 ]; then echo gateway.toml; else echo "dev$1.toml"; fi; }
node_status() { "$SHOAL" node status --config "$(conf "$1")" --json 2>/dev/null || true; }
wait_for() { # wait_for NODE PATTERN WHAT
  for _ in $(seq 600); do node_status "$1" | grep -q "$2" && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $3" >&2; exit 1
}
cat >gateway.toml <<TOML
[node]
fleet = "demo"
store = "gateway-store"
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
lan_prefixes = ["127.0.0.0/8"]
api = "127.0.0.1:0"
origin = ["http://127.0.0.1:$PORT/"]
channels = ["stable"]
[trust]
root = "keys/root.json"
TOML
"$SHOAL" node run --config gateway.toml --log-level warn 2>gateway.log &
NODE_PIDS+=($!)
wait_for 1 '"addrs": \[' "the gateway to start"
GATEWAY=$(node_status 1 | grep -o '/ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' | head -1)
echo "gateway: $GATEWAY"
for i in 2 3; do
  run "$SHOAL" device init "swarm-dev$i" --slot-size 320M --root keys/root.json --channel stable >/dev/null
  cat >"dev$i.toml" <<TOML
[node]
fleet = "demo"
store = "dev$i-store"
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = ["$GATEWAY"]
mdns = false
lan_prefixes = ["127.0.0.0/8"]
api = "127.0.0.1:0"
[device]
config = "swarm-dev$i/shoal.toml"
TOML
  "$SHOAL" node run --config "dev$i.toml" --log-level warn 2>"dev$i.log" &
  NODE_PIDS+=($!)
done
wait_for 2 '"class": "lan"' "device 2 to meet the gateway"
wait_for 3 '"class": "lan"' "device 3 to meet the gateway"
sleep 1.5   # the gossip mesh forms at its first heartbeat
run "$SHOAL" node announce --config gateway.toml --repo "http://127.0.0.1:$PORT/"
wait_for 2 '"state": "tentative"' "device 2 to install v2"
wait_for 3 '"state": "tentative"' "device 3 to install v2"
for i in 1 2 3; do run "$SHOAL" node status --config "$(conf $i)"; done
for p in "${NODE_PIDS[@]}"; do kill -TERM "$p"; wait "$p"; done
NODE_PIDS=()
for i in 2 3; do
  run "$SHOAL" device reboot --config "swarm-dev$i/shoal.toml"
  run "$SHOAL" update boot-check --config "swarm-dev$i/shoal.toml"
done

step "11. A fleet: 2 sites × 3 devices take v1, then v2 (10% changed) as deltas traded through the swarm; each site's uplink against the delta bytes"
# shoal fleet run (docs/fleet.md) builds the fleet, brings every device to v1
# (not measured), publishes v2 with deltas against v1, announces it once, and
# measures. As root, in network namespaces behind 20 Mbit/s site uplinks;
# otherwise on loopback.
FLEET_SIZE=${DEMO_FLEET_SIZE:-32M}
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v tc >/dev/null; then
  FLEET_NET=(--uplink 20mbit)
else
  FLEET_NET=(--loopback)
fi
run "$SHOAL" fleet run --sites 2 --devices 3 --size "$FLEET_SIZE" --changed 0.1 --deltas "${FLEET_NET[@]}" --timeout 5m

step "12. The simulator: 200 remote sites of 8 devices behind 10 Mbit/s uplinks, each device running the real scheduler"
# shoal sim run (docs/simulator.md) writes summary.json, CSV files and plots.
run "$SHOAL" sim run "$ROOT/sim/scenarios/remote-sites.toml" -o sim
ls sim

printf '\ndemo finished: everything is in %s\n' "$OUT"
