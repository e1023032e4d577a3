package manifest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	f := newFixture(t, nil)
	res := f.publish("stable", 1, 1, nil)
	secret := filepath.Join(f.dir, "secret.txt")
	write(t, secret, []byte("outside the repository"))
	if err := os.Symlink(secret, filepath.Join(f.repo, "index", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../secret.txt", filepath.Join(f.repo, "chunks", "rel")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(f.repo))
	defer srv.Close()
	get := func(path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.URL.Opaque = path // send the path exactly as written
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := get("/metadata/timestamp.json", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"timestamp"`) {
		t.Fatalf("timestamp: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("timestamp cache-control %q", resp.Header.Get("Cache-Control"))
	}
	idx := "/index/" + res.Artifacts[0].Index
	full, _ := os.ReadFile(filepath.Join(f.repo, "index", res.Artifacts[0].Index))
	resp, body = get(idx, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || body != string(full[10:20]) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	resp, _ = get(idx, map[string]string{"Range": "bytes=999999-"})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable range: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodHead, srv.URL+idx, nil)
	hr, err := srv.Client().Do(req)
	if err != nil || hr.StatusCode != 200 || hr.ContentLength != int64(len(full)) {
		t.Fatalf("HEAD: %v %v", hr, err)
	}
	req, _ = http.NewRequest(http.MethodPut, srv.URL+idx, strings.NewReader("x"))
	if pr, _ := srv.Client().Do(req); pr.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", pr.StatusCode)
	}

	for _, p := range []string{
		"/../secret.txt",
		"/metadata/../../secret.txt",
		"/%2e%2e/secret.txt",
		"/metadata/%2e%2e/%2e%2e/secret.txt",
		"/metadata/..%2f..%2fsecret.txt",
		"/index/escape",
		"/chunks/rel",
		"/.lock",
		"/metadata",
		"/",
		"/metadata//timestamp.json",
		"/index/%00",
	} {
		resp, body := get(p, nil)
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d", p, resp.StatusCode)
		}
		if strings.Contains(body, "outside the repository") {
			t.Errorf("%s: leaked the file outside the repository", p)
		}
	}
}
