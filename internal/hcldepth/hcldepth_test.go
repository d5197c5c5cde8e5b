package hcldepth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// nest builds HCL nested n deep in one of the ways the parser recurses.
var nest = map[string]func(n int) string{
	"parentheses": func(n int) string { return "a = " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n) + "\n" },
	"brackets":    func(n int) string { return "a = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n" },
	"objects":     func(n int) string { return "a = " + strings.Repeat("{b = ", n) + "1" + strings.Repeat("}", n) + "\n" },
	"blocks":      func(n int) string { return strings.Repeat("b {\n", n) + strings.Repeat("}\n", n) },
	"minus":       func(n int) string { return "a = " + strings.Repeat("-", n) + "1\n" },
	"bang":        func(n int) string { return "a = " + strings.Repeat("!", n) + "true\n" },
	"conditional": func(n int) string { return "a = " + strings.Repeat("x ? ", n) + "1" + strings.Repeat(" : 2", n) + "\n" },
	"splat":       func(n int) string { return "a = x" + strings.Repeat("[*]", n) + "\n" },
	"templates":   func(n int) string { return "a = " + strings.Repeat(`"${`, n) + "1" + strings.Repeat(`}"`, n) + "\n" },
	"directives": func(n int) string {
		return `a = "` + strings.Repeat("%{if true}", n) + "x" + strings.Repeat("%{endif}", n) + "\"\n"
	},
	"heredocs": func(n int) string {
		var b strings.Builder
		b.WriteString("a = ")
		for range n {
			b.WriteString("<<E\n${")
		}
		b.WriteString("1")
		for range n {
			b.WriteString("}\nE\n")
		}
		return b.String()
	},
}

// TestDeepNesting: deep nesting of every kind the parser recurses on is
// refused with an *Error, and never reaches the parser (which overflows
// Go's stack, a fatal error, at a few hundred thousand levels): a million
// levels of unary minus, 20,000 of the others (lexing costs about a
// microsecond a token).
func TestDeepNesting(t *testing.T) {
	for name, f := range nest {
		t.Run(name, func(t *testing.T) {
			n := 20000
			if name == "minus" {
				n = 1e6
			}
			var e *Error
			if err := Check([]byte(f(n)), 0); !errors.As(err, &e) || e.Max != MaxDepth || e.Line < 1 {
				t.Fatalf("Check(%d deep) = %v, want an *Error", n, err)
			}
		})
	}
}

// TestDepthBound: each kind of nesting counts one level a level, and the
// bound is exact; what Check accepts parses.
func TestDepthBound(t *testing.T) {
	for name, f := range nest {
		t.Run(name, func(t *testing.T) {
			// "a = (1)" is one level; heredocs and templates hold an
			// interpolation each (two levels); blocks and objects one.
			per := 1
			if name == "templates" || name == "heredocs" {
				per = 2
			}
			ok := (MaxDepth - 1) / per
			if name == "directives" {
				ok = MaxDepth - 3 // the quote, then one a directive, and the last %{ and its if
			}
			if err := Check([]byte(f(ok)), 0); err != nil {
				t.Fatalf("Check(%d deep) = %v, want nil", ok, err)
			}
			if _, diags := hclsyntax.ParseConfig([]byte(f(ok)), "x.hcl", hcl.Pos{Line: 1, Column: 1}); diags.HasErrors() && name != "splat" && name != "conditional" {
				t.Logf("(the parser's diagnostics, not Check's business: %v)", diags)
			}
			if err := Check([]byte(f(MaxDepth+1)), 0); err == nil {
				t.Fatalf("Check(%d deep) = nil, want an error", MaxDepth+1)
			}
		})
	}
}

// TestSeparatorsEndOperators: operators in a list, or on lines of their
// own, do not add up.
func TestSeparatorsEndOperators(t *testing.T) {
	list := "a = [" + strings.Repeat("-1, ", 10000) + "]\n"
	lines := strings.Repeat("a = -1\nb = !true\nc = x ? 1 : 2\n", 10000)
	for _, src := range []string{list, lines} {
		if err := Check([]byte(src), 0); err != nil {
			t.Errorf("Check(%.30q…) = %v", src, err)
		}
	}
	comments := strings.Repeat("a = -1 # comment\nb = -1 // comment\n", 10000)
	if err := Check([]byte(comments), 0); err != nil {
		t.Errorf("Check(lines ending in comments) = %v", err)
	}
	// In parentheses, and in a for expression in braces, a newline ends
	// nothing: the parser reads on.
	for _, src := range []string{
		"a = (" + strings.Repeat("-\n", 100) + "1)\n",
		"a = {for k, v in x : k => " + strings.Repeat("-\n", 100) + "1}\n",
		"a = {\n# c\nfor k, v in x : k => " + strings.Repeat("-# c\n", 100) + "1}\n",
	} {
		if err := Check([]byte(src), 0); err == nil {
			t.Errorf("Check(%.40q…): unary operators across newlines were not counted", src)
		}
	}
}

func seeds(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, g := range []string{"../../contrib/*.hcl", "../../policy/testdata/policy/*.hcl", "testdata/*.hcl"} {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		tb.Fatal("no seeds: contrib/*.hcl and policy/testdata/policy/*.hcl are missing")
	}
	return out
}

// TestRealFiles: hvmon's own example files are far from the bound.
func TestRealFiles(t *testing.T) {
	for _, b := range seeds(t) {
		if err := Check(b, 8); err != nil {
			t.Errorf("Check(a shipped file, max 8) = %v", err)
		}
	}
}

// FuzzCheck: whatever Check accepts, the parser parses into a syntax tree
// whose depth is within a constant factor of MaxDepth.
func FuzzCheck(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	for _, mk := range nest {
		f.Add([]byte(mk(3)))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if Check(src, 0) != nil {
			return
		}
		file, _ := hclsyntax.ParseConfig(src, "fuzz.hcl", hcl.Pos{Line: 1, Column: 1})
		if file == nil {
			return
		}
		w := &depthWalker{}
		hclsyntax.Walk(file.Body.(*hclsyntax.Body), w)
		if w.max > 8*MaxDepth {
			t.Fatalf("Check accepted a file whose syntax tree is %d deep", w.max)
		}
	})
}

type depthWalker struct{ cur, max int }

func (w *depthWalker) Enter(hclsyntax.Node) hcl.Diagnostics {
	w.cur++
	w.max = max(w.max, w.cur)
	return nil
}

func (w *depthWalker) Exit(hclsyntax.Node) hcl.Diagnostics {
	w.cur--
	return nil
}
