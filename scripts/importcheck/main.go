// Command importcheck enforces the package import rules written in
// docs/architecture.md: it reads the "allowed imports" block there and fails
// when a package of this module imports one of ours it may not.
//
// The block is a fenced code block right after a line containing
// "<!-- allowed-imports -->"; each line is "pkg: dep dep ...". Packages under
// internal/ may be imported by anything and may import only other internal
// packages and chunker. Packages not listed are an error, so a new package
// cannot slip past the rules.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const module = "github.com/shoalnet/shoal"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: importcheck docs/architecture.md")
		os.Exit(2)
	}
	allowed, err := readRules(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "importcheck:", err)
		os.Exit(2)
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "importcheck: go list:", err)
		os.Exit(2)
	}
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(strings.TrimPrefix(f[0], module), "/")
		if pkg == "" || strings.HasPrefix(pkg, "scripts/") || strings.HasPrefix(pkg, "bench/") {
			continue
		}
		rule, listed := allowed[pkg]
		if !listed && !strings.HasPrefix(pkg, "internal/") {
			bad = append(bad, fmt.Sprintf("%s: package is not listed in the allowed-imports block", pkg))
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(dep, "internal/") || rule[dep] {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s imports %s, which docs/architecture.md does not allow", pkg, dep))
		}
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(os.Stderr, b)
		}
		os.Exit(1)
	}
}

func readRules(path string) (map[string]map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rules := map[string]map[string]bool{}
	lines := strings.Split(string(b), "\n")
	i := 0
	for i < len(lines) && !strings.Contains(lines[i], "<!-- allowed-imports -->") {
		i++
	}
	for i < len(lines) && !strings.HasPrefix(lines[i], "```") {
		i++
	}
	if i >= len(lines) {
		return nil, fmt.Errorf("%s: no allowed-imports block", path)
	}
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		pkg, deps, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"pkg: deps\"", path, i+1)
		}
		set := map[string]bool{}
		for _, d := range strings.Fields(deps) {
			set[d] = true
		}
		rules[strings.TrimSpace(pkg)] = set
	}
	return rules, nil
}
