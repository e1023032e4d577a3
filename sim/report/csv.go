package report

import (
	"encoding/csv"
	"io"
	"strconv"

	"github.com/shoalnet/shoal/sim"
)

// Column names are a contract with scripts, like summary.json's fields:
// add columns at the end, never rename.
var (
	deviceHeader = []string{"device", "site", "completion_seconds", "received_lan_bytes", "received_wan_bytes",
		"received_origin_bytes", "sent_bytes", "had_base", "power_cuts", "sleeps", "lower_bound_seconds"}
	siteHeader   = []string{"site", "devices", "new_bytes", "uplink_down_bytes", "uplink_up_bytes", "uplink_ratio", "completion_seconds"}
	seriesHeader = []string{"seconds", "completed", "origin_egress_bytes", "uplink_bytes", "lan_bytes", "active_flows"}
)

func i64(v int64) string   { return strconv.FormatInt(v, 10) }
func f64(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// seconds writes a completion time; a device or site that did not
// complete (-1 in the Result) is an empty cell, which spreadsheets and
// pandas read as missing rather than as a time.
func seconds(v float64) string {
	if v < 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', 6, 64)
}

func writeCSV(w io.Writer, header []string, n int, row func(i int) []string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	for i := range n {
		if err := cw.Write(row(i)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeDevices(w io.Writer, res *sim.Result) error {
	return writeCSV(w, deviceHeader, len(res.DeviceRows), func(i int) []string {
		d := res.DeviceRows[i]
		return []string{strconv.Itoa(d.Device), strconv.Itoa(d.Site), seconds(d.Completion), i64(d.Received.LAN), i64(d.Received.WAN),
			i64(d.Received.Origin), i64(d.Sent), strconv.FormatBool(d.HadBase), strconv.Itoa(d.PowerCuts), strconv.Itoa(d.Sleeps),
			seconds(d.LowerBound)}
	})
}

func writeSites(w io.Writer, res *sim.Result) error {
	return writeCSV(w, siteHeader, len(res.SiteRows), func(i int) []string {
		s := res.SiteRows[i]
		ratio := ""
		if s.NewBytes > 0 {
			ratio = strconv.FormatFloat(float64(s.UplinkDown)/float64(s.NewBytes), 'f', 6, 64)
		}
		return []string{strconv.Itoa(s.Site), strconv.Itoa(s.Devices), i64(s.NewBytes), i64(s.UplinkDown), i64(s.UplinkUp), ratio, seconds(s.Completion)}
	})
}

func writeSeries(w io.Writer, res *sim.Result) error {
	return writeCSV(w, seriesHeader, len(res.Series), func(i int) []string {
		s := res.Series[i]
		return []string{f64(s.Seconds), strconv.Itoa(s.Completed), i64(s.OriginEgressBytes), i64(s.UplinkBytes), i64(s.LANBytes), strconv.Itoa(s.ActiveFlows)}
	})
}
