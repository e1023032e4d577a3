# Shared helpers for bench/*.sh. Sourced, not run.

# need CMD...: fail early, naming the Debian package to install.
need() {
	local c missing=()
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "missing tools: ${missing[*]}" >&2
		echo "install them with: apt-get install -y casync debootstrap zstd e2fsprogs time" >&2
		exit 1
	fi
}

# now: wall clock in seconds with microseconds (bash 5).
now() { echo "$EPOCHREALTIME"; }

# median: the median of the numbers on stdin (mean of the middle two for an
# even count).
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) exit 1
		if (NR % 2) printf "%.4f\n", v[(NR + 1) / 2]
		else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
	}'
}

# div A B [DIGITS]: A/B as a decimal.
div() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "inf"; else printf "%.*f\n", d, a / b }'; }

# jsonnum FIELD: the number in `"FIELD": N` from one JSON object on stdin.
# Enough for the flat objects shoal and bench helpers print; avoids needing jq.
jsonnum() {
	sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\),\{0,1\}\$/\1/p" | head -n1
}

# load: the load averages, for the record (timings are noisy on a shared box).
load() { sed 's/^.*load average: /load /' <<<"$(uptime)"; }

# machine: one line describing the CPU and core count.
machine() {
	local model
	model=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
	echo "$model, $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, $(uname -sr)"
}

# warm FILE: read FILE once so that every timed run reads it from the page
# cache. Dropping caches is neither allowed nor needed: all runs see the same
# warm cache.
warm() { cat "$1" >/dev/null; }

# mirror_url CODENAME: the Debian mirror configured for CODENAME in
# /etc/apt/sources.list(.d), deb822 stanzas first, then one-line entries.
# Read at run time so that no host name is written into the scripts.
mirror_url() {
	local code=$1 f
	{
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -r "$f" ] || continue
			awk -v code="$code" '
				function flush() {
					if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " code " ") && uri != "" && enabled != "no") {
						print uri
						found = 1
						exit
					}
					types = suites = uri = enabled = ""
				}
				/^[ \t]*$/ { flush(); next }
				/^[ \t]*#/ { next }
				tolower($1) == "types:"   { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
				tolower($1) == "suites:"  { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
				tolower($1) == "uris:"    { uri = $2 }
				tolower($1) == "enabled:" { enabled = tolower($2) }
				END { if (!found) flush() }
			' "$f"
		done
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -r "$f" ] || continue
			awk -v code="$code" '
				$1 == "deb" {
					i = 2
					if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
					if ($(i + 1) == code) { print $i; exit }
				}' "$f"
		done
	} | head -n1
}

# swarm_workdir NAME: make $W (BENCH_DIR/NAME), build shoal (unless SHOAL
# is set) and bench/swarmdrv into it; SHOAL becomes an absolute path.
swarm_workdir() {
	W=${BENCH_DIR:-/tmp/shoal-bench}/$1
	mkdir -p "$W"
	if [ -z "${SHOAL:-}" ]; then
		SHOAL=$PWD/bin/shoal
		go build -o "$SHOAL" ./cmd/shoal
	fi
	SHOAL=$(realpath "$SHOAL")
	go build -o "$W/swarmdrv" ./bench/swarmdrv
}
