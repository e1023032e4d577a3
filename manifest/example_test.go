package manifest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// A publisher makes keys and publishes an image; a device provisioned with
// root.json verifies the release before installing it.
func Example() {
	dir, _ := os.MkdirTemp("", "shoal-example")
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "rootfs.img")
	os.WriteFile(img, bytes.Repeat([]byte("an operating system image "), 40000), 0o644)

	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		panic(err)
	}
	repo := filepath.Join(dir, "repo")
	res, err := manifest.Publish(context.Background(), manifest.PublishOptions{
		Repo: repo, Keys: keys, Channel: "stable", Version: 1,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: img}},
		Hardware:  []string{"rpi4"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("published %s/%d, %d bytes\n", res.Channel, res.Version, res.Bytes)

	device, err := manifest.NewClient(manifest.ClientConfig{
		TrustedRoot: keys.RootJSON(),
		StateDir:    filepath.Join(dir, "state"),
		Mirrors:     []fetch.Fetcher{fetch.Dir(repo)},
	})
	if err != nil {
		panic(err)
	}
	v, err := device.Verify(context.Background(), manifest.Device{ID: "dev-1", Channel: "stable", Hardware: "rpi4"})
	if err != nil {
		panic(err)
	}
	a := v.Release.Artifacts[0]
	fmt.Printf("verified %s/%d: %s, %d bytes, %d chunks, root matches: %v\n",
		v.Release.Channel, v.Release.Version, a.Name, a.Size, len(v.Indexes[0].Chunks), a.Root == v.Indexes[0].Root())

	_, err = device.Verify(context.Background(), manifest.Device{ID: "dev-2", Channel: "stable", Hardware: "x86"})
	fmt.Println(err)
	// Output:
	// published stable/1, 1040000 bytes
	// verified stable/1: rootfs, 1040000 bytes, 4 chunks, root matches: true
	// release stable/1: manifest: release is for other hardware: made for rpi4, device hardware is "x86"
}
