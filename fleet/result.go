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
	// UplinkOutBytes is, per site, what left the site over its uplink
	// (to other sites, requests, acknowledgements).
	UplinkOutBytes []int64 `json:"uplink_out_bytes"`
	// UplinkRatio is UplinkBytes / NewBytes per site; OriginRatio is
	// OriginEgressBytes / (NewBytes × sites); BoundRatio is
	// CompletionSeconds / LowerBoundSeconds (0 when the bound is 0).
	UplinkRatio []float64 `json:"uplink_ratio"`
	OriginRatio float64   `json:"origin_ratio"`
	BoundRatio  float64   `json:"bound_ratio"`
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
	// BytesBySource sums the devices' verified chunk bytes by where they
	// came from (lan, wan, origin), by the nodes' own count.
	BytesBySource map[string]int64 `json:"bytes_by_source"`
	// LANPeers is, per device, how many LAN peers it had when the release
	// was announced.
	LANPeers []int    `json:"lan_peers_at_announce"`
	SetupSec float64  `json:"setup_seconds"` // everything before the announcement
	WorkDir  string   `json:"work_dir,omitempty"`
	Errors   []string `json:"errors,omitempty"`
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
	fmt.Fprintf(w, "fleet      %d sites × %d devices%s (%s), %s image, %s\n", r.Sites, r.DevicesPerSite, cache, r.Backend, MiB(r.Size), fresh)
	fmt.Fprintf(w, "links      uplinks %s, LAN %s, origin %s\n", FormatRate(r.UplinkRate), FormatRate(r.LANRate), FormatRate(r.OriginRate))
	fmt.Fprintf(w, "committed  %d of %d devices\n", r.Committed, r.Devices)
	fmt.Fprintf(w, "new bytes  %s per site (%d chunks)\n", MiB(r.NewBytes), r.NewChunks)
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
		fmt.Fprintf(w, "  site %-3d in %s = %.3f × new bytes%s\n", i+1, MiB(b), r.UplinkRatio[i], out)
	}
	fmt.Fprintf(w, "origin     sent %s = %.3f × new bytes × sites", MiB(r.OriginEgressBytes), r.OriginRatio)
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
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error      %s\n", e)
	}
	if r.WorkDir != "" {
		fmt.Fprintf(w, "kept       %s\n", r.WorkDir)
	}
}

// MiB writes a byte count in MiB.
func MiB(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
