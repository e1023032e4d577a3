#!/usr/bin/env bash
# bench/dedup.sh: how many bytes an update from v1 to v2 of a real Debian root
# file system costs with shoal, with casync (same chunk sizes) and with a
# zstd binary patch.
#
#   v1 = debootstrap --variant=minbase of the release this machine runs
#   v2 = v1 + `apt-get install --no-install-recommends $DEDUP_PACKAGES`
#   Both without downloaded .deb files and package lists, as an image build
#   would ship them.
#
# Each tree is saved twice, reproducibly: as a 1 GiB ext4 image and as a
# name-sorted tar. For both pairs the script reports
#   - shoal:  `shoal diff --json` new_bytes (distinct chunks of v2 not in v1)
#   - casync: the uncompressed bytes of the chunks v2 adds to a store that
#             holds v1, computed two ways that must agree (see below)
#   - zstd:   the size of `zstd -19 --long=31 --patch-from=v1 v2`
#
# Usage: bench/dedup.sh            (run as root: debootstrap, chroot, mounts)
# Env:   SHOAL (built from ./cmd/shoal into the cache unless set),
#        DEDUP_CACHE (/tmp/shoal-dedup), DEDUP_PACKAGES ("less nano curl"),
#        SOURCE_DATE_EPOCH (1700000000: every timestamp in the images)
#
# Everything is cached under DEDUP_CACHE: the trees (debootstrap takes
# minutes), the images and the tar files. Delete a file there to rebuild it.
# To compare several package sets against one v1, copy v1 into each cache
# first: cp -a /tmp/shoal-dedup/v1 /tmp/shoal-dedup-b/v1.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

CACHE=${DEDUP_CACHE:-/tmp/shoal-dedup}
PACKAGES=${DEDUP_PACKAGES:-less nano curl}
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
CHUNK=16384:65536:262144
IMG_SIZE=1G
# Fixed identity for both images, so that only the trees differ.
FS_UUID=6c8f1c2e-0c3a-4b1e-9e51-5b1a7e0d2f10
FS_HASH_SEED=0f2b5a8e-7d41-4c63-a0e9-3f6d1c2b4a57

[ "$(id -u)" = 0 ] || { echo "dedup.sh: run as root (debootstrap, chroot, mount)" >&2; exit 1; }
need debootstrap casync zstd mkfs.ext4 debugfs dumpe2fs tar go
mkdir -p "$CACHE"
if [ -z "${SHOAL:-}" ]; then
	SHOAL="$CACHE/shoal"
	go build -o "$SHOAL" ./cmd/shoal
fi
IDXSTAT="$CACHE/idxstat"
go build -o "$IDXSTAT" ./bench/idxstat

. /etc/os-release
SUITE=$VERSION_CODENAME
log() { printf '== %s\n' "$*" >&2; }

# --- mounts for the chroot, always undone -----------------------------------
MOUNTS=()
RESOLV_TREE="" # tree whose resolv.conf is the host's while apt runs
cleanup() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" || true
	done
	MOUNTS=()
	if [ -n "$RESOLV_TREE" ]; then
		rm -f "$RESOLV_TREE/etc/resolv.conf"
		if [ -e "$RESOLV_TREE/etc/resolv.conf.dedup-saved" ] || [ -L "$RESOLV_TREE/etc/resolv.conf.dedup-saved" ]; then
			mv "$RESOLV_TREE/etc/resolv.conf.dedup-saved" "$RESOLV_TREE/etc/resolv.conf"
		fi
		RESOLV_TREE=""
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# rmtree DIR: rm -rf, but never through a mount point that is still there
# (a bind-mounted /dev inside a tree must not be emptied).
rmtree() {
	local d
	d=$(realpath -m "$1")
	if awk -v d="$d" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
		echo "dedup.sh: refusing to remove $d: something is mounted below it" >&2
		exit 1
	fi
	rm -rf --one-file-system "$d"
}

# --- the two trees -----------------------------------------------------------
# ship_clean TREE: drop what an image build does not ship: downloaded .deb
# files, apt's binary caches and the package lists (apt-get update leaves
# tens of MB there). Done to both trees, so v2 - v1 is what apt installed.
ship_clean() {
	find "$1/var/cache/apt" -type f \( -name '*.deb' -o -name '*.bin' \) -delete
	find "$1/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial -exec rm -rf {} +
}

build_v1() {
	local mirror
	mirror=$(mirror_url "$SUITE")
	[ -n "$mirror" ] || { echo "dedup.sh: no mirror for $SUITE in /etc/apt/sources.list(.d)" >&2; exit 1; }
	log "debootstrap --variant=minbase $SUITE (mirror from apt sources: $mirror)"
	rmtree "$CACHE/v1.tmp"
	debootstrap --variant=minbase "$SUITE" "$CACHE/v1.tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
	ship_clean "$CACHE/v1.tmp"
	mv "$CACHE/v1.tmp" "$CACHE/v1"
}

build_v2() {
	local t="$CACHE/v2.tmp"
	log "v2 = v1 + apt-get install --no-install-recommends $PACKAGES"
	rmtree "$t"
	cp -a "$CACHE/v1" "$t"
	mount -t proc proc "$t/proc"
	MOUNTS+=("$t/proc")
	mount --bind /dev "$t/dev"
	MOUNTS+=("$t/dev")
	# Name resolution for apt inside the chroot; the tree's own file is put
	# back afterwards so that v2 differs from v1 only by what apt did.
	if [ -e "$t/etc/resolv.conf" ] || [ -L "$t/etc/resolv.conf" ]; then
		mv "$t/etc/resolv.conf" "$t/etc/resolv.conf.dedup-saved"
	fi
	RESOLV_TREE=$t
	cp /etc/resolv.conf "$t/etc/resolv.conf"
	local env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root)
	# shellcheck disable=SC2086 # PACKAGES is a word list
	{
		chroot "$t" "${env[@]}" apt-get update
		chroot "$t" "${env[@]}" apt-get install -y --no-install-recommends $PACKAGES
		chroot "$t" "${env[@]}" apt-get clean
	} >"$CACHE/apt.log" 2>&1 || { tail -n 20 "$CACHE/apt.log" >&2; exit 1; }
	cleanup
	ship_clean "$t"
	mv "$t" "$CACHE/v2"
}

# --- reproducible images -----------------------------------------------------
# ext4: fixed UUID, hash seed, creation time (E2FSPROGS_FAKE_TIME), no
# journal, 4 KiB blocks, 256-byte inodes. mkfs.ext4 -d copies each file's
# atime/mtime/ctime from the tree, and ctime cannot be set from user space,
# so afterwards every used inode's four timestamps are set to EPOCH with
# debugfs (inode numbers from the inode bitmap, so no file name is parsed).
# The same tree then always gives the same bytes.
build_ext4() {
	local tree=$1 out=$2
	log "ext4 image $out"
	rm -f "$out.tmp"
	E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -T default -b 4096 -I 256 -O ^has_journal \
		-U "$FS_UUID" -E "hash_seed=$FS_HASH_SEED,root_owner=0:0" -d "$tree" "$out.tmp" "$IMG_SIZE" >/dev/null
	dumpe2fs "$out.tmp" 2>/dev/null | awk -v epoch="$EPOCH" '
		/^Inode count:/ { total = $3 }
		/^ *Free inodes: / {
			sub(/^ *Free inodes: */, "")
			n = split($0, parts, /, */)
			for (i = 1; i <= n; i++) {
				if (parts[i] == "") continue
				if (split(parts[i], r, "-") == 2) { for (j = r[1] + 0; j <= r[2] + 0; j++) free[j] = 1 }
				else free[parts[i] + 0] = 1
			}
		}
		END {
			split("atime mtime ctime crtime", f, " ")
			for (ino = 1; ino <= total; ino++) {
				if ((ino in free) || (ino != 2 && ino < 11)) continue  # 1, 3-10: reserved
				for (k = 1; k <= 4; k++)
					printf "sif <%d> %s @%d\nsif <%d> %s_extra 0\n", ino, f[k], epoch, ino, f[k]
			}
		}' >"$out.times"
	E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$out.times" "$out.tmp" >/dev/null 2>"$out.debugfs.log"
	if grep -v '^debugfs [0-9]' "$out.debugfs.log" | grep -q .; then
		echo "dedup.sh: debugfs reported:" >&2
		head "$out.debugfs.log" >&2
		exit 1
	fi
	e2fsck -fn "$out.tmp" >/dev/null 2>&1 || { echo "dedup.sh: e2fsck -fn $out.tmp failed" >&2; exit 1; }
	rm -f "$out.times" "$out.debugfs.log"
	mv "$out.tmp" "$out"
}

# tar: name-sorted, fixed mtime and owners, GNU format (no atime/ctime).
build_tar() {
	local tree=$1 out=$2
	log "tar $out"
	tar -C "$tree" --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
		--format=gnu -cf "$out.tmp" . 2> >(grep -v 'socket ignored' >&2 || true)
	mv "$out.tmp" "$out"
}

# --- measurements ------------------------------------------------------------
W="$CACHE/work"
mkdir -p "$W"

# casync_new KIND: uncompressed bytes and count of the chunks that v2 adds to
# a store holding v1, two ways:
#  index: parse both .caibx files (bench/idxstat): distinct chunk IDs of v2 not
#         in v1, each counted once, sizes from the index offsets;
#  store: make v1 and v2 into two fresh stores; the .cacnk files in v2's
#         store that v1's store lacks are what a v1 store gains; decompress
#         each with zstd and sum the sizes.
# The two must agree; the script stops if they do not.
casync_new() {
	local kind=$1 s1="$W/$1.v1.castr" s2="$W/$1.v2.castr"
	rm -rf "$s1" "$s2"
	casync make --chunk-size=$CHUNK --store="$s1" "$W/$kind.v1.caibx" "$CACHE/v1.$kind" >/dev/null
	casync make --chunk-size=$CHUNK --store="$s2" "$W/$kind.v2.caibx" "$CACHE/v2.$kind" >/dev/null
	"$IDXSTAT" diff "$W/$kind.v1.caibx" "$W/$kind.v2.caibx" >"$W/$kind.casync.diff.json"
	(cd "$s1" && find . -name '*.cacnk' -printf '%f\n' | sort) >"$W/$kind.s1.list"
	(cd "$s2" && find . -name '*.cacnk' -printf '%f\n' | sort) >"$W/$kind.s2.list"
	local n=0 bytes=0 f sz
	while read -r f; do
		sz=$(zstd -dc "$s2/${f:0:4}/$f" | wc -c)
		bytes=$((bytes + sz))
		n=$((n + 1))
	done < <(comm -13 "$W/$kind.s1.list" "$W/$kind.s2.list")
	local ib ic
	ib=$(jsonnum new_bytes <"$W/$kind.casync.diff.json")
	ic=$(jsonnum new_chunks <"$W/$kind.casync.diff.json")
	if [ "$ib" != "$bytes" ] || [ "$ic" != "$n" ]; then
		echo "dedup.sh: casync $kind: index says $ic chunks/$ib bytes new, store says $n/$bytes" >&2
		exit 1
	fi
	echo "$bytes $n"
}

# main runs once the whole file is parsed, so editing the script while it
# runs cannot change what it does.
main() {
	[ -d "$CACHE/v1" ] || build_v1
	[ -d "$CACHE/v2" ] || build_v2
	for v in v1 v2; do
		[ -f "$CACHE/$v.ext4" ] || build_ext4 "$CACHE/$v" "$CACHE/$v.ext4"
		[ -f "$CACHE/$v.tar" ] || build_tar "$CACHE/$v" "$CACHE/$v.tar"
	done

	echo "# dedup: $(date -u +%FT%TZ), $(machine)"
	echo "# $(load)"
	echo "# v1: debootstrap --variant=minbase $SUITE; v2: v1 + $PACKAGES"
	echo "# chunk sizes 16/64/256 KiB for both tools; casync $(casync --version | awk '{ print $2 }'), zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n1)"
	echo
	printf '| pair | v2 size | shoal new_bytes (chunks) | casync new bytes (chunks) | zstd patch bytes | shoal/casync |\n'
	printf '|---|---:|---:|---:|---:|---:|\n'
	STATS=()
	for kind in ext4 tar; do
		v1="$CACHE/v1.$kind" v2="$CACHE/v2.$kind"
		"$SHOAL" chunk "$v1" -o "$W/$kind.v1.idx" >/dev/null
		"$SHOAL" chunk "$v2" -o "$W/$kind.v2.idx" >/dev/null
		"$SHOAL" diff --json "$W/$kind.v1.idx" "$W/$kind.v2.idx" >"$W/$kind.shoal.diff.json"
		sb=$(jsonnum new_bytes <"$W/$kind.shoal.diff.json")
		sc=$(jsonnum new_chunks <"$W/$kind.shoal.diff.json")
		casync_new "$kind" >"$W/$kind.casync.new"
		read -r cb cc <"$W/$kind.casync.new"
		# zstd --long=31 allows a 2 GiB window; decoding needs --long=31 (or
		# --memory=2048MB) too. The round trip is checked.
		t0=$(now)
		# (zstd prints tuning notes for --patch-from at high levels; kept in a log.)
		zstd -q -f -19 --long=31 --patch-from="$v1" "$v2" -o "$W/$kind.patch.zst" 2>"$W/$kind.zstd.log" ||
			{ cat "$W/$kind.zstd.log" >&2; exit 1; }
		zsecs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
		zstd -q -d -f --long=31 --patch-from="$v1" "$W/$kind.patch.zst" -o "$W/$kind.v2.check"
		cmp -s "$W/$kind.v2.check" "$v2" || { echo "dedup.sh: zstd patch round trip failed for $kind" >&2; exit 1; }
		rm -f "$W/$kind.v2.check"
		zb=$(stat -c %s "$W/$kind.patch.zst")
		printf '| %s | %d | %d (%d) | %d (%d) | %d | %s |\n' "$kind" "$(stat -c %s "$v2")" \
			"$sb" "$sc" "$cb" "$cc" "$zb" "$(div "$sb" "$cb")"
		STATS+=("$kind $zsecs")
	done

	echo
	echo "Chunk statistics of v2 (bench/idxstat stats on both indexes):"
	echo
	printf '| pair | tool | chunks | avg chunk | smallest | largest | chunks at max |\n'
	printf '|---|---|---:|---:|---:|---:|---:|\n'
	for kind in ext4 tar; do
		for tool in shoal casync; do
			ext=idx
			[ "$tool" = shoal ] || ext=caibx
			f="$W/$kind.v2.$tool.stats.json"
			"$IDXSTAT" stats "$W/$kind.v2.$ext" >"$f"
			printf '| %s | %s | %d | %d | %d | %d | %d |\n' "$kind" "$tool" \
				"$(jsonnum chunks <"$f")" "$(jsonnum avg_chunk <"$f")" "$(jsonnum smallest_chunk <"$f")" \
				"$(jsonnum largest_chunk <"$f")" "$(jsonnum at_max <"$f")"
		done
	done
	echo
	echo "Where the new chunks are (bench/idxstat runs): a run is a stretch of consecutive"
	echo "new chunks of v2. For tar, changed = bytes of v2's members that are not"
	echo "byte-identical in v1 (what an ideal delta sends); overhead = new bytes outside them."
	echo
	printf '| pair | tool | new chunks | runs | chunks per run (mean / max) | changed bytes | overhead bytes | overhead per run (median / max) | runs with > 256 KiB overhead (bytes) |\n'
	printf '|---|---|---:|---:|---:|---:|---:|---:|---:|\n'
	for kind in ext4 tar; do
		for tool in shoal casync; do
			ext=idx
			[ "$tool" = shoal ] || ext=caibx
			f="$W/$kind.$tool.runs.json"
			if [ "$kind" = tar ]; then
				"$IDXSTAT" runs "$W/$kind.v1.$ext" "$W/$kind.v2.$ext" "$CACHE/v1.tar" "$CACHE/v2.tar" >"$f"
			else
				"$IDXSTAT" runs "$W/$kind.v1.$ext" "$W/$kind.v2.$ext" >"$f"
			fi
			if [ "$kind" = tar ]; then
				extra=$(printf '%d | %d | %d / %d | %d (%d)' "$(jsonnum changed_bytes <"$f")" "$(jsonnum overhead_bytes <"$f")" \
					"$(jsonnum overhead_per_run_median <"$f")" "$(jsonnum overhead_per_run_max <"$f")" \
					"$(jsonnum runs_overhead_over_256k <"$f")" "$(jsonnum overhead_in_runs_over_256k <"$f")")
			else
				extra="- | - | - | -"
			fi
			printf '| %s | %s | %d | %d | %.1f / %d | %s |\n' "$kind" "$tool" "$(jsonnum new_chunks <"$f")" \
				"$(jsonnum runs <"$f")" "$(jsonnum chunks_per_run_mean <"$f")" "$(jsonnum chunks_per_run_max <"$f")" "$extra"
		done
	done
	echo
	echo "Reference: distinct aligned blocks of v2 found at no aligned position in v1, i.e."
	echo "what an ideal block-level delta sends (bench/idxstat blocks; 4 KiB = the ext4"
	echo "block size, 512 B = the tar record)."
	echo
	printf '| pair | block | new blocks | new bytes | runs of new blocks | single-block runs |\n'
	printf '|---|---:|---:|---:|---:|---:|\n'
	for kind in ext4 tar; do
		bs=4096
		[ "$kind" = ext4 ] || bs=512
		f="$W/$kind.blocks.json"
		"$IDXSTAT" blocks "$CACHE/v1.$kind" "$CACHE/v2.$kind" "$bs" >"$f"
		printf '| %s | %d | %d | %d | %d | %d |\n' "$kind" "$bs" "$(jsonnum new_blocks <"$f")" \
			"$(jsonnum new_bytes <"$f")" "$(jsonnum runs <"$f")" "$(jsonnum single_runs <"$f")"
	done
	echo
	for s in "${STATS[@]}"; do
		set -- $s
		echo "# zstd -19 --long=31 --patch-from on $1 took ${2}s"
	done
	echo "# $(load)"
	echo "# work files (indexes, stores, patches): $W"
}

main "$@"
