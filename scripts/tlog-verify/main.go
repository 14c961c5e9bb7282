// tlog-verify checks a Liaison audit log (or any C2SP tlog-tiles log with height-8 tiles and
// uint16-length entry bundles) with Go's own transparency-log code: golang.org/x/mod's
// sumdb/note verifies the signed checkpoint and sumdb/tlog the hash tiles, proofs and tree
// hashes (the code the Go checksum database's clients run). This file only fetches bytes and
// hands them over; read it before you rely on it. See docs/audit.md, "A standard verifier".
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tlog-verify scripts/tlog-verify/main.go
//	./tlog-verify -key "$(cat log-verifier.key)" [-ca cert.pem] [-state cp.txt] [-entries] https://HOST/v1/audit
//
// It prints "OK <origin> <size> <root>" and exits 0, or prints "FAIL: <why>" and exits 1.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8 // C2SP tlog-tiles: 256 hashes per tile

type fetcher struct {
	base   string
	client *http.Client
	cache  map[string][]byte
}

func (f *fetcher) get(path string) ([]byte, error) {
	if b, ok := f.cache[path]; ok {
		return b, nil
	}
	resp, err := f.client.Get(f.base + "/" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<24))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	f.cache[path] = b
	return b, nil
}

// c2sp turns sumdb's tile path (tile/H/L/N[.p/W]) into C2SP's (tile/L/N[.p/W]).
func c2sp(t tlog.Tile) string {
	return strings.Replace(t.Path(), fmt.Sprintf("tile/%d/", height), "tile/", 1)
}

// TileReader for tlog.TileHashReader.
func (f *fetcher) Height() int { return height }
func (f *fetcher) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := f.get(c2sp(t))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
func (f *fetcher) SaveTiles([]tlog.Tile, [][]byte) {}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// open verifies the note's signature by the log key and parses the C2SP checkpoint body.
func open(msg []byte, v note.Verifier) (checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		return checkpoint{}, errors.New("checkpoint: not origin, size and root lines")
	}
	if lines[0] != v.Name() {
		return checkpoint{}, fmt.Errorf("checkpoint origin %q is not the key's name %q", lines[0], v.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("checkpoint root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return checkpoint{lines[0], size, root}, nil
}

func width(size, n int64) int {
	if w := size - n*256; w < 256 {
		return int(w)
	}
	return 256
}

func run() error {
	key := flag.String("key", "", "the log verifier key you trust (<name>+<id>+<key>)")
	ca := flag.String("ca", "", "PEM file of the server's CA (default: the system's)")
	state := flag.String("state", "", "file holding the last checkpoint verified: checked for consistency, then replaced")
	entries := flag.Bool("entries", false, "also check every entry bundle (needs LIAISON_AUDIT_PUBLIC on the server)")
	flag.Parse()
	if *key == "" || flag.NArg() != 1 {
		return errors.New("usage: tlog-verify -key KEY [-ca FILE] [-state FILE] [-entries] https://HOST/v1/audit")
	}
	v, err := note.NewVerifier(strings.TrimSpace(*key))
	if err != nil {
		return fmt.Errorf("log key: %v", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", *ca)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	f := &fetcher{strings.TrimRight(flag.Arg(0), "/"), &http.Client{Transport: tr, Timeout: 60 * time.Second}, map[string][]byte{}}

	// Step 1: the checkpoint, signed by the key you trust.
	msg, err := f.get("checkpoint")
	if err != nil {
		return err
	}
	cp, err := open(msg, v)
	if err != nil {
		return err
	}
	// Step 3: every hash tile, authenticated against the signed root.
	thr := tlog.TileHashReader(tlog.Tree{N: cp.size, Hash: cp.root}, f)
	if cp.size > 0 {
		th, err := tlog.TreeHash(cp.size, thr)
		if err != nil {
			return fmt.Errorf("tiles: %v", err)
		}
		if th != cp.root {
			return errors.New("the tiles do not hash to the signed root")
		}
	}
	// Rebuild the whole tree from the raw level-0 tiles too (x/mod 0.7.0's TileHashReader was
	// seen to skip some tile checks), then prove a sample of leaves against the signed root.
	var stored []tlog.Hash
	mem := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(stored)) {
				return nil, fmt.Errorf("hash %d not rebuilt", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	var leaves []tlog.Hash
	for n := int64(0); n*256 < cp.size; n++ {
		raw, err := f.get(c2sp(tlog.Tile{H: height, L: 0, N: n, W: width(cp.size, n)}))
		if err != nil {
			return err
		}
		if len(raw) != width(cp.size, n)*tlog.HashSize {
			return fmt.Errorf("level-0 tile %d has %d bytes", n, len(raw))
		}
		for j := 0; j < len(raw); j += tlog.HashSize {
			var leaf tlog.Hash
			copy(leaf[:], raw[j:j+tlog.HashSize])
			more, err := tlog.StoredHashesForRecordHash(int64(len(leaves)), leaf, mem)
			if err != nil {
				return err
			}
			stored = append(stored, more...)
			leaves = append(leaves, leaf)
		}
	}
	if cp.size > 0 {
		rebuilt, err := tlog.TreeHash(cp.size, mem)
		if err != nil {
			return err
		}
		if rebuilt != cp.root {
			return errors.New("the level-0 tiles do not hash to the signed root")
		}
	}
	for i := int64(0); i < cp.size; i += 1 + cp.size/16 {
		proof, err := tlog.ProveRecord(cp.size, i, thr)
		if err != nil {
			return err
		}
		if err := tlog.CheckRecord(proof, cp.size, cp.root, i, leaves[i]); err != nil {
			return fmt.Errorf("inclusion of leaf %d: %v", i, err)
		}
	}
	// Every entry against its leaf hash (entry bundles: uint16 length, then the entry).
	if *entries {
		for n := int64(0); n*256 < cp.size; n++ {
			t := tlog.Tile{H: height, L: 0, N: n, W: width(cp.size, n)}
			bundle, err := f.get(strings.Replace(c2sp(t), "tile/0/", "tile/entries/", 1))
			if err != nil {
				return err
			}
			for j := 0; j < t.W; j++ {
				if len(bundle) < 2 || len(bundle) < 2+(int(bundle[0])<<8|int(bundle[1])) {
					return fmt.Errorf("entry bundle %d is truncated", n)
				}
				l := int(bundle[0])<<8 | int(bundle[1])
				if tlog.RecordHash(bundle[2:2+l]) != leaves[n*256+int64(j)] {
					return fmt.Errorf("entry %d does not match its leaf hash", n*256+int64(j))
				}
				bundle = bundle[2+l:]
			}
		}
	}
	// Step 2: consistency with the checkpoint verified last time, then remember this one.
	if *state != "" {
		old, err := os.ReadFile(*state)
		if err == nil {
			prev, err := open(old, v)
			if err != nil {
				return fmt.Errorf("%s: %v", *state, err)
			}
			if prev.size > cp.size {
				return fmt.Errorf("the log shrank from %d to %d entries", prev.size, cp.size)
			}
			if prev.size > 0 {
				proof, err := tlog.ProveTree(cp.size, prev.size, thr)
				if err != nil {
					return err
				}
				if err := tlog.CheckTree(proof, cp.size, cp.root, prev.size, prev.root); err != nil {
					return fmt.Errorf("not consistent with the checkpoint of size %d in %s (a fork): %v", prev.size, *state, err)
				}
			}
			fmt.Printf("consistent with the checkpoint of size %d in %s\n", prev.size, *state)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		tmp := filepath.Join(filepath.Dir(*state), "."+filepath.Base(*state)+".tmp")
		if err := os.WriteFile(tmp, msg, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, *state); err != nil {
			return err
		}
	}
	fmt.Printf("OK %s %d %s\n", cp.origin, cp.size, base64.StdEncoding.EncodeToString(cp.root[:]))
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
}
