package fleet

import (
	"fmt"
	"io"
	"strings"
)

// Result is what `shoal fleet run --json` prints. The first seven fields
// are the contract of issue 9; the rest explain them.
type Result struct {
	Devices   int `json:"devices"`
	Committed int `json:"committed"` // ended on the new release with a verified slot
	// NewBytes is what the release adds over what the devices held
	// (NewBytes): what each site needs over its uplink at least once.
	NewBytes int64 `json:"new_bytes"`
	// UplinkBytes is, per site, what entered the site over its uplink
	// from the announcement to the last flip (interface counters: L2
	// frames, headers included; on loopback, chunk bytes the site's nodes
	// received from outside it, by their own count).
	UplinkBytes       []int64 `json:"uplink_bytes"`
	OriginEgressBytes int64   `json:"origin_egress_bytes"`
	CompletionSeconds float64 `json:"completion_seconds"` // announcement to the last device's flip
	LowerBoundSeconds float64 `json:"lower_bound_seconds"`

	Run            string  `json:"run"`      // the run's prefix: its namespaces are RUN-*
	Backend        string  `json:"backend"`  // "netns" or "loopback"
	Counters       string  `json:"counters"` // "interface" or "node"
	Sites          int     `json:"sites"`
	DevicesPerSite int     `json:"devices_per_site"`
	CacheNode      bool    `json:"cache_node"`
	Size           int64   `json:"size"`
	Changed        float64 `json:"changed"` // 1: a fresh release
	NewChunks      int     `json:"new_chunks"`
	UplinkRate     int64   `json:"uplink_bits_per_second"` // 0: uncapped
	LANRate        int64   `json:"lan_bits_per_second"`
	OriginRate     int64   `json:"origin_bits_per_second"`
	BoundTerm      string  `json:"lower_bound_term"`
	// Deltas says v2 was published with deltas against v1. DeltaBytes is
	// then what one device on v1 downloads for v2: the delta objects, the
	// new chunks kept whole (no delta clearly smaller) and the delta index
	// (publish --json's delta_bytes plus delta_index_bytes): what each
	// site needs over its uplink at least once, and what the lower bound
	// is computed from. DeltaObjects counts the deltas. UplinkDeltaRatio
	// is UplinkBytes / DeltaBytes per site, OriginDeltaRatio
	// OriginEgressBytes / (DeltaBytes × sites).
	Deltas           bool      `json:"deltas,omitempty"`
	DeltaBytes       int64     `json:"delta_bytes,omitempty"`
	DeltaObjects     int       `json:"delta_objects,omitempty"`
	UplinkDeltaRatio []float64 `json:"uplink_delta_ratio,omitempty"`
	OriginDeltaRatio float64   `json:"origin_delta_ratio,omitempty"`
	// UplinkOutBytes is, per site, what left the site over its uplink
	// (to other sites, requests, acknowledgements).
	UplinkOutBytes []int64 `json:"uplink_out_bytes"`
	// UplinkRatio is UplinkBytes / NewBytes per site; OriginRatio is
	// OriginEgressBytes / (NewBytes × sites); BoundRatio is
	// CompletionSeconds / LowerBoundSeconds (0 when the bound is 0).
	UplinkRatio []float64 `json:"uplink_ratio"`
	OriginRatio float64   `json:"origin_ratio"`
	BoundRatio  float64   `json:"bound_ratio"`
	// UplinkPayloadBytes and OriginPayloadBytes are the same counts less
	// FrameHeaderBytes for every frame the interface counted: what TCP
	// carried for its users (chunks, HTTP, libp2p's own framing). A
	// 1,500-byte MTU puts 66 bytes of headers on every 1,448 of payload,
	// 4.6%, so no transfer counted with headers comes within 1.05 of its
	// payload; these say how much of a ratio is the protocol's and how
	// much the frames'. The ratios are over the same denominators.
	UplinkPayloadBytes []int64   `json:"uplink_payload_bytes,omitempty"`
	OriginPayloadBytes int64     `json:"origin_egress_payload_bytes,omitempty"`
	UplinkPayloadRatio []float64 `json:"uplink_payload_ratio,omitempty"`
	OriginPayloadRatio float64   `json:"origin_payload_ratio,omitempty"`
	// OriginTCPSegments and OriginTCPRetransmits count the TCP segments
	// the origin sent and resent (its namespace's /proc/net/snmp):
	// resent segments count in OriginEgressBytes again.
	OriginTCPSegments    int64 `json:"origin_tcp_segments,omitempty"`
	OriginTCPRetransmits int64 `json:"origin_tcp_retransmits,omitempty"`
	// NodeTCPDuplicates counts the TCP segments the nodes received twice
	// (the D-SACKs they sent): resent though not lost, so they crossed
	// the uplink twice.
	NodeTCPDuplicates int64 `json:"node_tcp_duplicate_segments,omitempty"`
	// DeviceSeconds is, per site and device, the time from the
	// announcement to that device's flip (-1: it never flipped).
	DeviceSeconds [][]float64 `json:"device_seconds"`
	// BytesBySource sums the devices' verified bytes of the release by
	// where they came from (lan, wan, origin), by the nodes' own count:
	// its chunks, its index, and with deltas the delta index and deltas.
	BytesBySource map[string]int64 `json:"bytes_by_source"`
	// SiteBytesBySource is the same per site: a site's "origin" bytes
	// over NewBytes is how often its devices fetched each new chunk from
	// the origin.
	SiteBytesBySource []map[string]int64 `json:"site_bytes_by_source"`
	// DeviceBytesBySource is the same per site and device.
	DeviceBytesBySource [][]map[string]int64 `json:"device_bytes_by_source"`
	// DeviceSched is, per site and device, its scheduler's counters at the
	// end: requests by source class (requested_origin, requested_lan,
	// requested_wan), blocks for pieces it already held (duplicate),
	// requests given up (stalled) and wanters left out of the split for
	// stalling (excluded). A restarted device's counters are its last
	// run's.
	DeviceSched [][]map[string]int `json:"device_sched,omitempty"`
	// DeviceStartSeconds is, per site and device, when the harness first
	// saw the device's transfer of the release (-1: never).
	DeviceStartSeconds [][]float64 `json:"device_start_seconds,omitempty"`
	// DeviceFetchedSeconds is when the harness first saw the device hold
	// every position (-1: never seen: it flipped within one poll): what
	// comes after, until its flip, is the installer's fsync, the slot's
	// re-verification and the flip.
	DeviceFetchedSeconds [][]float64 `json:"device_fetched_seconds,omitempty"`
	// HeldSamples is, at each of HeldSampleSeconds (about a second
	// apart), every device's positions held, devices in site order (-1:
	// unknown): how the release spread.
	HeldSampleSeconds []float64 `json:"held_sample_seconds,omitempty"`
	HeldSamples       [][]int   `json:"held_samples,omitempty"`
	// LoadAverage is the machine's one-minute load average at the end:
	// the nodes share its cores with whatever else runs.
	LoadAverage float64 `json:"load_average"`
	// UplinkPerSecond is, per site, the rate (bytes per second) at which
	// bytes entered the site over its uplink in each interval of about a
	// second after the announcement; UplinkSampleSeconds the intervals'
	// ends (interface counters; absent on loopback): where the uplink
	// idled.
	UplinkPerSecond     [][]int64 `json:"uplink_in_per_second,omitempty"`
	UplinkSampleSeconds []float64 `json:"uplink_sample_seconds,omitempty"`
	// LANPeers is, per device, how many LAN peers it had when the release
	// was announced.
	LANPeers []int   `json:"lan_peers_at_announce"`
	SetupSec float64 `json:"setup_seconds"` // everything before the announcement
	// Mode is how the release travelled: "swarm" (shoal nodes) or
	// "http" (the baseline: every device from the origin, no nodes).
	Mode string `json:"mode"`
	// Final is, per site, each device's slot and version after its boot
	// check.
	Final [][]DeviceEnd `json:"device_final"`
	// The faults staged, and what they did (absent when not asked for).
	Cut      *CutReport      `json:"cut_uplink,omitempty"`
	Kill     *KillReport     `json:"kill,omitempty"`
	PowerOff *PowerOffReport `json:"power_off,omitempty"`
	WorkDir  string          `json:"work_dir,omitempty"`
	Errors   []string        `json:"errors,omitempty"`
}

// DeviceEnd is where a device ended: its active slot and version after
// the reboot and boot check that follow the release.
type DeviceEnd struct {
	Name      string `json:"name"`
	Slot      string `json:"slot"`
	Version   uint64 `json:"version"`
	Committed bool   `json:"committed"`
}

// CutReport is what --cut-uplink did: site Site's uplink dropped
// everything from DownAt to UpAt (seconds after the announcement).
type CutReport struct {
	Site      int     `json:"site"`
	DownAt    float64 `json:"down_at_seconds"`
	UpAt      float64 `json:"up_at_seconds"`
	Positions int     `json:"positions"` // the release index's chunk positions
	// HeldAtCut and HeldAtRestore are, per device of the site, the
	// positions it held when the uplink went down and when it came back
	// (-1: it had not started). A device that flipped during the cut
	// holds every position.
	HeldAtCut     []int `json:"held_at_cut"`
	HeldAtRestore []int `json:"held_at_restore"`
	// FlippedDuringCut counts the site's devices that flipped while it
	// was cut off.
	FlippedDuringCut int `json:"flipped_during_cut"`
	// UplinkBytesDuring is what crossed the uplink into the site while it
	// was cut (interface counters): nothing but what was in its queue.
	UplinkBytesDuring int64 `json:"uplink_bytes_during"`
}

// KillReport is what --kill did: each victim's node was killed (SIGKILL)
// mid-transfer and started again.
type KillReport struct {
	Site     int            `json:"site"`
	Fraction float64        `json:"fraction"`
	Devices  []KilledDevice `json:"devices"`
	// NoRefetch holds when every victim's restarted node fetched at most
	// MostAfter chunks: none of those its slot held verified when it was
	// killed (docs/fleet.md, "Faults").
	NoRefetch bool `json:"no_refetch"`
}

// KilledDevice is one victim of --kill.
type KilledDevice struct {
	Name      string  `json:"name"`
	KilledAt  float64 `json:"killed_at_seconds"`
	Restarted float64 `json:"restarted_at_seconds"`
	Positions int     `json:"positions"`
	// HeldBefore is the positions its node held (verified) just before
	// the kill; ChunksBefore and ChunksAfter the chunks it fetched, by
	// source, before the kill and after the restart.
	HeldBefore   int            `json:"held_before"`
	ChunksBefore map[string]int `json:"chunks_before"`
	ChunksAfter  map[string]int `json:"chunks_after"`
	// PlacedAtKill is the positions whose bytes in the slot being filled
	// verified against the index once the node was dead (the harness
	// hashes the slot as the installer does when it resumes).
	// LostUnwritten is HeldBefore − PlacedAtKill: chunks the node had
	// verified but that still waited in its write queue when it died.
	PlacedAtKill  int `json:"placed_at_kill"`
	LostUnwritten int `json:"lost_unwritten"`
	// MostAfter is the distinct chunks with a position not in place at
	// the kill: the most the restarted node may fetch without fetching a
	// chunk its slot held.
	MostAfter int `json:"most_after"`
}

// Sum adds a count by source.
func Sum[V int | int64](by map[string]V) V {
	var t V
	for _, v := range by {
		t += v
	}
	return t
}

// PowerOffReport is what --power-off did to one device: off at OffAt,
// on again at OnAt, flipped at FlippedAt (seconds after the
// announcement; -1: never).
type PowerOffReport struct {
	Device    string  `json:"device"`
	Site      int     `json:"site"`
	OffAt     float64 `json:"off_at_seconds"`
	OnAt      float64 `json:"on_at_seconds"`
	FlippedAt float64 `json:"flipped_at_seconds"`
	Positions int     `json:"positions"`
	HeldAtOff int     `json:"held_at_off"`
	// PlacedAtOff is the positions its slot held verified once it was off.
	PlacedAtOff int `json:"placed_at_off"`
	// OthersDoneAt is when every other device had flipped (-1: not by
	// the time it came back).
	OthersDoneAt float64 `json:"others_done_at_seconds"`
	// BytesAfterOn is the chunk bytes it verified after it came back, by
	// source: all "lan" when its site held the release by then.
	BytesAfterOn map[string]int64 `json:"bytes_by_source_after_on"`
	// SiteUplinkBytesAfterOn is what its site's uplink carried into the
	// site from its power-on to its flip (interface counters; on
	// loopback, the chunk bytes it took from outside the site).
	SiteUplinkBytesAfterOn int64 `json:"site_uplink_bytes_after_on"`
}

// Finish fills the ratios from the measured fields.
func (r *Result) Finish() {
	r.UplinkRatio = make([]float64, len(r.UplinkBytes))
	if r.NewBytes > 0 {
		for i, b := range r.UplinkBytes {
			r.UplinkRatio[i] = float64(b) / float64(r.NewBytes)
		}
		if r.Sites > 0 {
			r.OriginRatio = float64(r.OriginEgressBytes) / float64(r.NewBytes*int64(r.Sites))
			r.OriginPayloadRatio = float64(r.OriginPayloadBytes) / float64(r.NewBytes*int64(r.Sites))
		}
		r.UplinkPayloadRatio = nil
		for _, b := range r.UplinkPayloadBytes {
			r.UplinkPayloadRatio = append(r.UplinkPayloadRatio, float64(b)/float64(r.NewBytes))
		}
	}
	r.UplinkDeltaRatio = nil
	if r.DeltaBytes > 0 {
		for _, b := range r.UplinkBytes {
			r.UplinkDeltaRatio = append(r.UplinkDeltaRatio, float64(b)/float64(r.DeltaBytes))
		}
		if r.Sites > 0 {
			r.OriginDeltaRatio = float64(r.OriginEgressBytes) / float64(r.DeltaBytes*int64(r.Sites))
		}
	}
	if r.LowerBoundSeconds > 0 {
		r.BoundRatio = r.CompletionSeconds / r.LowerBoundSeconds
	}
}

// WriteText prints the result for people.
func (r *Result) WriteText(w io.Writer) {
	fresh := "a fresh release"
	if r.Changed > 0 && r.Changed < 1 {
		fresh = fmt.Sprintf("v2 over v1, %g changed", r.Changed)
	}
	cache := ""
	if r.CacheNode {
		cache = " + a cache node"
	}
	how := ""
	if r.Mode == BaselineHTTP {
		how = "; baseline: every device over HTTP from the origin, no swarm"
	}
	fmt.Fprintf(w, "fleet      %d sites × %d devices%s (%s), %s image, %s%s\n", r.Sites, r.DevicesPerSite, cache, r.Backend, MiB(r.Size), fresh, how)
	fmt.Fprintf(w, "links      uplinks %s, LAN %s, origin %s\n", FormatRate(r.UplinkRate), FormatRate(r.LANRate), FormatRate(r.OriginRate))
	fmt.Fprintf(w, "committed  %d of %d devices\n", r.Committed, r.Devices)
	fmt.Fprintf(w, "new bytes  %s per site (%d chunks)\n", MiB(r.NewBytes), r.NewChunks)
	if r.DeltaBytes > 0 {
		fmt.Fprintf(w, "deltas     %s per site with deltas (%d delta objects, the rest whole, the delta index)\n", MiB(r.DeltaBytes), r.DeltaObjects)
	}
	what := "interface counters, headers included"
	if r.Counters == "node" {
		what = "chunk bytes from outside the site, by the nodes' count"
	}
	fmt.Fprintf(w, "uplinks    (%s)\n", what)
	for i, b := range r.UplinkBytes {
		out := ""
		if i < len(r.UplinkOutBytes) {
			out = fmt.Sprintf(", out %s", MiB(r.UplinkOutBytes[i]))
		}
		if i < len(r.UplinkPayloadRatio) {
			out += fmt.Sprintf("; payload %.3f ×", r.UplinkPayloadRatio[i])
		}
		if i < len(r.UplinkDeltaRatio) {
			out += fmt.Sprintf("; %.3f × delta bytes", r.UplinkDeltaRatio[i])
		}
		fmt.Fprintf(w, "  site %-3d in %s = %.3f × new bytes%s\n", i+1, MiB(b), r.UplinkRatio[i], out)
	}
	fmt.Fprintf(w, "origin     sent %s = %.3f × new bytes × sites", MiB(r.OriginEgressBytes), r.OriginRatio)
	if r.OriginPayloadBytes > 0 {
		fmt.Fprintf(w, " (payload %.3f ×)", r.OriginPayloadRatio)
	}
	if r.OriginTCPSegments > 0 {
		fmt.Fprintf(w, "; %d of %d TCP segments resent (%d arrived twice at the nodes)", r.OriginTCPRetransmits, r.OriginTCPSegments, r.NodeTCPDuplicates)
	}
	fmt.Fprintln(w)
	bound := "no bound: nothing capped"
	if r.LowerBoundSeconds > 0 {
		bound = fmt.Sprintf("lower bound %.1f s (%s term), %.2f × the bound", r.LowerBoundSeconds, r.BoundTerm, r.BoundRatio)
	}
	fmt.Fprintf(w, "completion %.1f s after the announcement; %s\n", r.CompletionSeconds, bound)
	for i, site := range r.DeviceSeconds {
		var b strings.Builder
		for _, s := range site {
			if s < 0 {
				b.WriteString(" never")
			} else {
				fmt.Fprintf(&b, " %.1f", s)
			}
		}
		fmt.Fprintf(w, "  site %-3d devices flipped at%s s\n", i+1, b.String())
	}
	if len(r.BytesBySource) > 0 {
		fmt.Fprintf(w, "sources    lan %s, wan %s, origin %s (chunk bytes the devices verified)\n",
			MiB(r.BytesBySource["lan"]), MiB(r.BytesBySource["wan"]), MiB(r.BytesBySource["origin"]))
	}
	for i, b := range r.SiteBytesBySource {
		fmt.Fprintf(w, "  site %-3d lan %s, wan %s, origin %s (origin: %.3f × new bytes)\n", i+1, MiB(b["lan"]), MiB(b["wan"]), MiB(b["origin"]), float64(b["origin"])/float64(max(r.NewBytes, 1)))
	}
	if c := r.Cut; c != nil {
		fmt.Fprintf(w, "cut        site %d's uplink down from %.1f s to %.1f s (%d bytes crossed it meanwhile); %d of its devices flipped meanwhile\n",
			c.Site, c.DownAt, c.UpAt, c.UplinkBytesDuring, c.FlippedDuringCut)
		fmt.Fprintf(w, "  positions held of %d: at the cut %v, at the restore %v\n", c.Positions, c.HeldAtCut, c.HeldAtRestore)
	}
	if k := r.Kill; k != nil {
		verdict := "no verified chunk fetched twice"
		if !k.NoRefetch {
			verdict = "VERIFIED CHUNKS FETCHED AGAIN"
		}
		fmt.Fprintf(w, "kill       %d of site %d's devices killed (SIGKILL) and restarted: %s\n", len(k.Devices), k.Site, verdict)
		for _, d := range k.Devices {
			fmt.Fprintf(w, "  %-9s killed at %.1f s holding %d of %d positions (%d in its slot), restarted at %.1f s; fetched %d chunks before, %d after (at most %d)\n",
				d.Name, d.KilledAt, d.HeldBefore, d.Positions, d.PlacedAtKill, d.Restarted, Sum(d.ChunksBefore), Sum(d.ChunksAfter), d.MostAfter)
		}
	}
	if p := r.PowerOff; p != nil {
		flipped := "never flipped"
		if p.FlippedAt >= 0 {
			flipped = fmt.Sprintf("flipped at %.1f s", p.FlippedAt)
		}
		fmt.Fprintf(w, "power-off  %s off at %.1f s holding %d of %d positions, on at %.1f s, %s\n", p.Device, p.OffAt, p.HeldAtOff, p.Positions, p.OnAt, flipped)
		fmt.Fprintf(w, "  after power-on: lan %s, wan %s, origin %s; its site's uplink carried %s meanwhile\n",
			MiB(p.BytesAfterOn["lan"]), MiB(p.BytesAfterOn["wan"]), MiB(p.BytesAfterOn["origin"]), MiB(p.SiteUplinkBytesAfterOn))
	}
	if len(r.Final) > 0 {
		fmt.Fprintln(w, "devices    final slot and version after the boot check")
		for i, site := range r.Final {
			var b strings.Builder
			for _, d := range site {
				c := ""
				if !d.Committed {
					c = " (not committed)"
				}
				fmt.Fprintf(&b, "  %s: slot %s v%d%s", d.Name, d.Slot, d.Version, c)
			}
			fmt.Fprintf(w, "  site %-3d%s\n", i+1, b.String())
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error      %s\n", e)
	}
	if r.WorkDir != "" {
		fmt.Fprintf(w, "kept       %s\n", r.WorkDir)
	}
}

// MiB writes a byte count in MiB.
func MiB(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
