package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeThenVerifyOverHTTP(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"serve", "--repo", repo, "--listen", "127.0.0.1:0"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	re := regexp.MustCompile(`http://[0-9.:]+/`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); {
		url = re.FindString(out.String())
		time.Sleep(10 * time.Millisecond)
	}
	if url == "" {
		t.Fatalf("serve printed no address: %q", out.String())
	}
	res, errs, code := runCLI(t, "verify", "--repo", url, "--root", filepath.Join(keys, "root.json"), "--hardware", "rpi4", "--json")
	if code != 0 {
		t.Fatalf("verify over HTTP: %d %s", code, errs)
	}
	var r verifyResult
	json.Unmarshal([]byte(res), &r)
	if r.Version != 2 || r.Mirror != url {
		t.Fatalf("%+v", r)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}
