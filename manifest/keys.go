package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/mod/sumdb/note"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// Roles are the four top-level TUF roles, in the order a client checks
// them.
var Roles = []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS}

func validRole(r string) bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// Key directory layout (docs/trust.md):
//
//	DIR/root.json              the newest root: what devices are provisioned with
//	DIR/roots/N.root.json      every root version, copied into repositories
//	DIR/private/ROLE-ID.key    ed25519 private keys, PKCS#8 PEM, mode 0600
//	DIR/retired/ROLE-ID.key    keys rotated out, kept for the record
//	DIR/private/log.skey       the transparency log's note signer key, mode 0600
//	DIR/log.pub                its verifier key: what devices and auditors trust
//
// The log key files are optional (a key directory made before the log,
// or with KeysOptions.NoLog, has neither) but come as a pair. The signer
// key's name deliberately does not end in ".key", so it is not taken for
// a TUF key.
const (
	rootFile    = "root.json"
	rootsDir    = "roots"
	privateDir  = "private"
	retiredDir  = "retired"
	keySuffix   = ".key"
	maxRootFile = 1 << 20
	maxKeyFile  = 16 << 10

	// LogPubFile is the log verifier key's file name in a key directory.
	LogPubFile  = "log.pub"
	logSkeyFile = "log.skey"
	// DefaultLogName names the log key when KeysOptions.LogName is empty.
	DefaultLogName = "shoal-log"
)

// Keyring is a key directory: the current root and the private keys held
// for its roles.
type Keyring struct {
	dir       string
	root      *metadata.Metadata[metadata.RootType]
	rootBytes []byte
	keys      map[string]ed25519.PrivateKey // by TUF key ID
	logSigner note.Signer                   // nil: no log key
	logVKey   string
}

// KeysOptions configure [InitKeys] and [Keyring.Rotate].
type KeysOptions struct {
	// Thresholds per role; missing roles get 1 (or keep theirs on rotate).
	Thresholds map[string]int
	// Keys per role; at least the threshold. Missing: the threshold (or
	// the current count on rotate).
	Keys map[string]int
	// Expires is the root's lifetime; zero means one year.
	Expires time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoLog: InitKeys makes no transparency log key.
	NoLog bool
	// LogName names the log key (DefaultLogName if empty): a host/path-like
	// string without spaces or '+', shown in every checkpoint signature.
	LogName string
}

func (o *KeysOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *KeysOptions) expires() time.Duration {
	if o.Expires > 0 {
		return o.Expires
	}
	return 365 * 24 * time.Hour
}

// expiry rounds to whole seconds in UTC, as TUF metadata writes times.
func expiry(now time.Time, d time.Duration) time.Time {
	return now.Add(d).UTC().Truncate(time.Second)
}

// InitKeys creates a key directory: keys for every role and root version
// 1, self-signed by the threshold of root keys. It refuses a directory
// that already holds any key or root (see existingKeys): a directory whose
// root.json is gone but whose keys remain is not started over silently.
func InitKeys(dir string, o KeysOptions) (*Keyring, error) {
	found, err := existingKeys(dir)
	if err != nil {
		return nil, err
	}
	if len(found) > 0 {
		const most = 5
		list := strings.Join(found[:min(len(found), most)], ", ")
		if len(found) > most {
			list += fmt.Sprintf(" and %d more", len(found)-most)
		}
		return nil, fmt.Errorf("%w: %s already holds keys (%s); use rotate, or init an empty directory", ErrKeys, dir, list)
	}
	for role, n := range o.Thresholds {
		if !validRole(role) {
			return nil, fmt.Errorf("%w: unknown role %q (want root, timestamp, snapshot or targets)", ErrKeys, role)
		}
		if n < 1 || n > 16 {
			return nil, fmt.Errorf("%w: threshold %s=%d: want 1..16", ErrKeys, role, n)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, rootsDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, privateDir), 0o700); err != nil {
		return nil, err
	}
	k := &Keyring{dir: dir, keys: map[string]ed25519.PrivateKey{}}
	root := metadata.Root(expiry(o.now(), o.expires()))
	for _, role := range Roles {
		th, n, err := roleCounts(role, o, 1, 0)
		if err != nil {
			return nil, err
		}
		root.Signed.Roles[role].Threshold = th
		for range n {
			_, pub, err := k.newKey(role)
			if err != nil {
				return nil, err
			}
			if err := root.Signed.AddKey(pub, role); err != nil {
				return nil, err
			}
		}
	}
	if !o.NoLog {
		if err := k.initLog(o.LogName); err != nil {
			return nil, err
		}
	}
	if err := k.setRoot(root, nil); err != nil {
		return nil, err
	}
	return k, nil
}

// existingKeys lists, relative to dir, what InitKeys must not overwrite or
// add beside: root.json, log.pub, and any file under roots/, private/ or
// retired/. Empty directories do not count. A missing dir holds nothing.
func existingKeys(dir string) ([]string, error) {
	var found []string
	for _, name := range []string{rootFile, LogPubFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, sub := range []string{privateDir, rootsDir, retiredDir} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			found = append(found, filepath.Join(sub, e.Name()))
		}
	}
	return found, nil
}

// initLog makes the transparency log key: the signer under private/
// (0600) and the verifier key in DIR/log.pub.
func (k *Keyring) initLog(name string) error {
	if name == "" {
		name = DefaultLogName
	}
	skey, vkey, err := tlog.GenerateKey(name)
	if err != nil {
		return fmt.Errorf("%w: log key: %v", ErrKeys, err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return fmt.Errorf("%w: log key: %v", ErrKeys, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(k.dir, privateDir, logSkeyFile), []byte(skey+"\n"), 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(k.dir, LogPubFile), []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	k.logSigner, k.logVKey = signer, vkey
	return nil
}

// loadLog reads the log key pair, if the directory has one.
func (k *Keyring) loadLog() error {
	sp := filepath.Join(k.dir, privateDir, logSkeyFile)
	vp := filepath.Join(k.dir, LogPubFile)
	_, serr := os.Stat(sp)
	_, verr := os.Stat(vp)
	switch {
	case errors.Is(serr, fs.ErrNotExist) && errors.Is(verr, fs.ErrNotExist):
		return nil
	case errors.Is(serr, fs.ErrNotExist):
		return fmt.Errorf("%w: %s exists but the log signer key %s does not; restore it, or remove %s to publish without a log", ErrKeys, vp, sp, vp)
	case errors.Is(verr, fs.ErrNotExist):
		return fmt.Errorf("%w: log signer key %s exists but its verifier key %s does not", ErrKeys, sp, vp)
	}
	st, err := os.Stat(sp)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s is readable by others (mode %v); chmod 600 it", ErrKeys, sp, st.Mode().Perm())
	}
	sb, err := readBounded(sp, maxKeyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeys, err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(sb)))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrKeys, sp, err)
	}
	vb, err := readBounded(vp, maxKeyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeys, err)
	}
	vkeys := ParseLogKeys(vb)
	if len(vkeys) != 1 {
		return fmt.Errorf("%w: %s holds %d keys, want 1", ErrKeys, vp, len(vkeys))
	}
	v, err := note.NewVerifier(vkeys[0])
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrKeys, vp, err)
	}
	// The pair must match, or every checkpoint would be refused by the
	// devices provisioned with log.pub.
	msg, err := note.Sign(&note.Note{Text: "shoal log key check\n"}, signer)
	if err == nil {
		_, err = note.Open(msg, note.VerifierList(v))
	}
	if err != nil {
		return fmt.Errorf("%w: %s does not verify what %s signs: %v", ErrKeys, vp, sp, err)
	}
	k.logSigner, k.logVKey = signer, vkeys[0]
	return nil
}

// LogSigner returns the transparency log's checkpoint signer, or nil for
// a key directory without a log key.
func (k *Keyring) LogSigner() note.Signer { return k.logSigner }

// LogVerifierKey returns the log's verifier key (the content of
// DIR/log.pub), or "" without a log key.
func (k *Keyring) LogVerifierKey() string { return k.logVKey }

// TargetsLog returns the log publish should append to (as
// PublishOptions.Log), or nil without a log key.
func (k *Keyring) TargetsLog() *RepoLog {
	if k.logSigner == nil {
		return nil
	}
	l, err := NewRepoLog(k.logSigner, k.logVKey)
	if err != nil {
		return nil // loadLog and initLog checked the key already
	}
	return l
}

// roleCounts returns the threshold and key count for role.
func roleCounts(role string, o KeysOptions, curTh, curN int) (th, n int, err error) {
	th = curTh
	if v, ok := o.Thresholds[role]; ok {
		th = v
	}
	n = max(curN, th)
	if v, ok := o.Keys[role]; ok {
		n = v
	}
	if th < 1 || n < th || n > 16 {
		return 0, 0, fmt.Errorf("%w: role %s: threshold %d with %d keys (want 1 <= threshold <= keys <= 16)", ErrKeys, role, th, n)
	}
	return th, n, nil
}

// newKey generates an ed25519 key, writes it under private/ and returns
// its ID and public key.
func (k *Keyring) newKey(role string) (string, *metadata.Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return "", nil, err
	}
	id, err := key.ID()
	if err != nil {
		return "", nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	name := filepath.Join(k.dir, privateDir, role+"-"+id[:16]+keySuffix)
	if err := atomicfile.WriteFile(name, b, 0o600); err != nil {
		return "", nil, err
	}
	k.keys[id] = priv
	return id, key, nil
}

// LoadKeys opens a key directory made by [InitKeys].
func LoadKeys(dir string) (*Keyring, error) {
	rb, err := readBounded(filepath.Join(dir, rootFile), maxRootFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	root, err := metadata.Root().FromBytes(rb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, rootFile), classify("root.json", err))
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, rootFile), classify("root.json", err))
	}
	k := &Keyring{dir: dir, root: root, rootBytes: rb, keys: map[string]ed25519.PrivateKey{}}
	ents, err := os.ReadDir(filepath.Join(dir, privateDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), keySuffix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, privateDir, e.Name())
		priv, err := readPrivateKey(p)
		if err != nil {
			return nil, err
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			return nil, err
		}
		id, err := key.ID()
		if err != nil {
			return nil, err
		}
		k.keys[id] = priv
	}
	if err := k.loadLog(); err != nil {
		return nil, err
	}
	return k, nil
}

func readPrivateKey(p string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable by others (mode %v); chmod 600 it", ErrKeys, p, st.Mode().Perm())
	}
	b, err := readBounded(p, maxKeyFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %s: not a PEM PRIVATE KEY", ErrKeys, p)
	}
	anyKey, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeys, p, err)
	}
	priv, ok := anyKey.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not an ed25519 key", ErrKeys, p)
	}
	return priv, nil
}

// readBounded reads a regular file of at most max bytes (fetch.ReadFile:
// a named pipe is refused, not waited on).
func readBounded(p string, max int64) ([]byte, error) {
	return fetch.ReadFile(p, max)
}

// Dir is the key directory.
func (k *Keyring) Dir() string { return k.dir }

// RootJSON returns the current root metadata as written to DIR/root.json.
func (k *Keyring) RootJSON() []byte { return k.rootBytes }

// RootVersion returns the current root's version.
func (k *Keyring) RootVersion() int64 { return k.root.Signed.Version }

// Threshold returns a role's threshold in the current root.
func (k *Keyring) Threshold(role string) int {
	if r := k.root.Signed.Roles[role]; r != nil {
		return r.Threshold
	}
	return 0
}

// RootHistory returns every root version's bytes, oldest first, from
// DIR/roots. Repositories carry all of them so a device provisioned with
// an old root can walk forward one version at a time.
func (k *Keyring) RootHistory() ([][]byte, error) {
	var out [][]byte
	for v := int64(1); v <= k.root.Signed.Version; v++ {
		p := filepath.Join(k.dir, rootsDir, strconv.FormatInt(v, 10)+".root.json")
		b, err := readBounded(p, maxRootFile)
		if err != nil {
			return nil, fmt.Errorf("%w: root history: %v", ErrKeys, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// signers returns signers for every held key of role in root, and fails
// unless they reach the role's threshold.
func (k *Keyring) signers(root *metadata.RootType, role string) ([]signature.Signer, error) {
	r := root.Roles[role]
	if r == nil {
		return nil, fmt.Errorf("%w: root has no role %s", ErrKeys, role)
	}
	var out []signature.Signer
	ids := append([]string(nil), r.KeyIDs...)
	sort.Strings(ids)
	for _, id := range ids {
		if priv, ok := k.keys[id]; ok {
			s, err := signature.LoadED25519Signer(priv)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	if len(out) < r.Threshold {
		return nil, fmt.Errorf("%w: %s holds %d of the %d %s keys needed", ErrKeys, filepath.Join(k.dir, privateDir), len(out), r.Threshold, role)
	}
	return out, nil
}

// sign replaces md's signatures with those of every held key of role in
// the current root.
func sign[T metadata.Roles](k *Keyring, role string, md *metadata.Metadata[T]) error {
	ss, err := k.signers(&k.root.Signed, role)
	if err != nil {
		return err
	}
	md.ClearSignatures()
	for _, s := range ss {
		if _, err := md.Sign(s); err != nil {
			return fmt.Errorf("sign %s: %w", role, err)
		}
	}
	return nil
}

// setRoot signs root with the root keys of prev (if any) and of root
// itself, checks both thresholds, and writes roots/N.root.json and then
// root.json.
func (k *Keyring) setRoot(root *metadata.Metadata[metadata.RootType], prev *metadata.Metadata[metadata.RootType]) error {
	root.ClearSignatures()
	seen := map[string]bool{}
	var all []signature.Signer
	for _, r := range []*metadata.Metadata[metadata.RootType]{prev, root} {
		if r == nil {
			continue
		}
		ss, err := k.signers(&r.Signed, metadata.ROOT)
		if err != nil {
			return err
		}
		for _, s := range ss {
			pub, _ := s.PublicKey()
			key, _ := metadata.KeyFromPublicKey(pub)
			id, _ := key.ID()
			if !seen[id] {
				seen[id] = true
				all = append(all, s)
			}
		}
	}
	for _, s := range all {
		if _, err := root.Sign(s); err != nil {
			return err
		}
	}
	if prev != nil {
		if err := prev.VerifyDelegate(metadata.ROOT, root); err != nil {
			return fmt.Errorf("%w: new root not signed by the previous root's threshold: %v", ErrKeys, err)
		}
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return fmt.Errorf("%w: new root not signed by its own threshold: %v", ErrKeys, err)
	}
	b, err := root.ToBytes(true)
	if err != nil {
		return err
	}
	v := strconv.FormatInt(root.Signed.Version, 10)
	if err := atomicfile.WriteFile(filepath.Join(k.dir, rootsDir, v+".root.json"), b, 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(k.dir, rootFile), b, 0o644); err != nil {
		return err
	}
	k.root, k.rootBytes = root, b
	return nil
}

// Rotate replaces every key of role with new ones (as many as before,
// or as o says) and writes the next root version, signed by the threshold
// of the old root keys and of the new ones, so devices holding the old
// root accept it. Old private keys move to DIR/retired. Publish again
// afterwards so the repository carries the new root and metadata signed
// with the new keys.
func (k *Keyring) Rotate(role string, o KeysOptions) error {
	if !validRole(role) {
		return fmt.Errorf("%w: unknown role %q (want root, timestamp, snapshot or targets)", ErrKeys, role)
	}
	prevBytes := k.rootBytes
	prev, err := metadata.Root().FromBytes(prevBytes)
	if err != nil {
		return err
	}
	next, err := metadata.Root().FromBytes(prevBytes)
	if err != nil {
		return err
	}
	cur := next.Signed.Roles[role]
	th, n, err := roleCounts(role, o, cur.Threshold, len(cur.KeyIDs))
	if err != nil {
		return err
	}
	old := append([]string(nil), cur.KeyIDs...)
	for _, id := range old {
		if err := next.Signed.RevokeKey(id, role); err != nil {
			return err
		}
	}
	next.Signed.Roles[role].Threshold = th
	for range n {
		_, pub, err := k.newKey(role)
		if err != nil {
			return err
		}
		if err := next.Signed.AddKey(pub, role); err != nil {
			return err
		}
	}
	next.Signed.Version = prev.Signed.Version + 1
	next.Signed.Expires = expiry(o.now(), o.expires())
	if err := k.setRoot(next, prev); err != nil {
		return err
	}
	// Retire the old keys only once the new root is on disk.
	if err := os.MkdirAll(filepath.Join(k.dir, retiredDir), 0o700); err != nil {
		return err
	}
	for _, id := range old {
		if used(next, id) {
			continue
		}
		name := role + "-" + id[:16] + keySuffix
		src := filepath.Join(k.dir, privateDir, name)
		if err := os.Rename(src, filepath.Join(k.dir, retiredDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		delete(k.keys, id)
	}
	return nil
}

func used(root *metadata.Metadata[metadata.RootType], id string) bool {
	_, ok := root.Signed.Keys[id]
	return ok
}

// KeyIDs returns the key IDs of a role in the current root, sorted.
func (k *Keyring) KeyIDs(role string) []string {
	r := k.root.Signed.Roles[role]
	if r == nil {
		return nil
	}
	ids := append([]string(nil), r.KeyIDs...)
	sort.Strings(ids)
	return ids
}
