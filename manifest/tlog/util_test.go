package tlog

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func signed(t testing.TB, k testKey, text string) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// sigBytes decodes the base64 signature from the first signature line.
func sigBytes(t *testing.T, sigs string) []byte {
	t.Helper()
	f := strings.Fields(strings.SplitN(sigs, "\n", 2)[0])
	b, err := base64.StdEncoding.DecodeString(f[len(f)-1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// replaceIndex rewrites the lookup line for h to name index i.
func replaceIndex(t *testing.T, shard []byte, h tlog.Hash, i int64) []lookupEntry {
	t.Helper()
	es, err := decodeLookup(shard, h[0])
	if err != nil {
		t.Fatal(err)
	}
	for j := range es {
		if es[j].Hash == h {
			es[j].Index = i
		}
	}
	return es
}
