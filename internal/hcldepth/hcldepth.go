// Package hcldepth bounds how deeply an HCL file nests, before the file
// reaches hashicorp/hcl's parser.
//
// hclsyntax parses by recursive descent: each level of nesting is a few
// Go calls of a few KiB of stack. A file nested a million deep (a policy
// or daemon configuration of a million "(" or "-") makes the parser grow
// its goroutine's stack past Go's 1 GB limit, which is a fatal error that
// no recover catches. Check measures the nesting first, with hclsyntax's
// own lexer (a state machine, not recursive), so that it sees exactly the
// tokens the parser will see: what is inside a string or a heredoc is
// text, and what is inside a template interpolation is code again.
//
// Each of these adds a level while it is open:
//
//   - a bracket of any kind: { [ ( , a template interpolation ${ or
//     directive %{ (until its closing }), a quoted template " or heredoc;
//   - a template directive's body, from %{if} or %{for} to %{endif} or
//     %{endfor};
//   - an operator whose operand the parser reads by recursion, without a
//     bracket: unary - and !, the conditional ?, and the full splat [*].
//     These count until a comma, or a newline where newlines end an
//     expression (a body or an object), which ends every expression the
//     operators are part of.
//
// The count is at least the parser's depth of recursion over the input,
// so bounding it bounds the stack the parser needs (and the depth of the
// syntax tree, over which decoding recurses in turn).
package hcldepth

import (
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxDepth is the deepest nesting Check accepts. hvmon's files nest a few
// levels (a block in a block, a list of strings); 64 leaves room and keeps
// the parser's stack under a few MiB.
const MaxDepth = 64

// Error is a file nested too deeply.
type Error struct {
	Line  int // where the limit was passed
	Depth int
	Max   int
}

func (e *Error) Error() string {
	return fmt.Sprintf("nested more than %d levels deep (brackets, braces, parentheses, strings and templates, and unary, conditional and splat operators)", e.Max)
}

type frame struct {
	newlineEnds bool // a body or an object: a newline ends expressions
	ops         int  // operators (and template directives) open in this frame
}

// Check returns an *Error when src nests deeper than max (MaxDepth when
// max <= 0). It returns nil for input it cannot lex: the parser reports
// that.
func Check(src []byte, max int) error {
	if max <= 0 {
		max = MaxDepth
	}
	toks, _ := hclsyntax.LexConfig(src, "", hcl.Pos{Line: 1, Column: 1})
	stack := []frame{{newlineEnds: true}} // the file's body
	depth := 0                            // open frames beyond the body, plus open operators
	for i, t := range toks {
		top := &stack[len(stack)-1]
		switch t.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc:
			// In a brace a newline ends an expression, unless the brace
			// holds a for expression, which the parser reads across lines.
			stack = append(stack, frame{newlineEnds: t.Type == hclsyntax.TokenOBrace && !forAfter(toks, i)})
			depth++
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenTemplateSeqEnd, hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc:
			if len(stack) > 1 {
				depth -= 1 + top.ops
				stack = stack[:len(stack)-1]
			}
		case hclsyntax.TokenMinus, hclsyntax.TokenBang, hclsyntax.TokenQuestion:
			top.ops++
			depth++
		case hclsyntax.TokenStar:
			// [*]: the full splat parses the rest of the traversal by
			// recursion, in the frame around the bracket.
			if i > 0 && toks[i-1].Type == hclsyntax.TokenOBrack && len(stack) > 1 {
				stack[len(stack)-2].ops++
				depth++
			}
		case hclsyntax.TokenIdent:
			// %{if …} and %{for …} open a directive body in the template
			// around them; %{endif} and %{endfor} close it.
			if len(stack) < 2 || !afterControl(toks, i) {
				break
			}
			tmpl := &stack[len(stack)-2]
			switch string(t.Bytes) {
			case "if", "for":
				tmpl.ops++
				depth++
			case "endif", "endfor":
				if tmpl.ops > 0 {
					tmpl.ops--
					depth--
				}
			}
		case hclsyntax.TokenComma:
			depth -= top.ops
			top.ops = 0
		case hclsyntax.TokenNewline, hclsyntax.TokenComment:
			// A # or // comment takes its line's newline with it; the
			// parser reads it as a newline.
			if top.newlineEnds && t.Bytes[len(t.Bytes)-1] == '\n' {
				depth -= top.ops
				top.ops = 0
			}
		}
		if depth > max {
			return &Error{Line: t.Range.Start.Line, Depth: depth, Max: max}
		}
	}
	return nil
}

// afterControl says whether toks[i] is the first word of a %{ … }
// directive (the parser skips comments and newlines before it).
func afterControl(toks hclsyntax.Tokens, i int) bool {
	j := i - 1
	for j >= 0 && skipped(toks[j].Type) {
		j--
	}
	return j >= 0 && toks[j].Type == hclsyntax.TokenTemplateControl
}

// forAfter says whether the brace toks[i] opens a for expression.
func forAfter(toks hclsyntax.Tokens, i int) bool {
	j := i + 1
	for j < len(toks) && skipped(toks[j].Type) {
		j++
	}
	return j < len(toks) && toks[j].Type == hclsyntax.TokenIdent && string(toks[j].Bytes) == "for"
}

func skipped(t hclsyntax.TokenType) bool {
	return t == hclsyntax.TokenComment || t == hclsyntax.TokenNewline
}

// Decode parses a configuration file of at most maxSize bytes (filename
// names it in errors) and decodes its body into v with gohcl, after Check
// has bounded its nesting. Errors name the file: a file too large, a
// *Error (with its line) for one nested too deeply, else hcl's
// diagnostics.
func Decode(src []byte, filename string, maxSize int, v any) error {
	if len(src) > maxSize {
		return fmt.Errorf("%s: larger than %d bytes", filename, maxSize)
	}
	var deep *Error
	if err := Check(src, 0); errors.As(err, &deep) {
		return fmt.Errorf("%s:%d: %w", filename, deep.Line, deep)
	}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return diags
	}
	if diags := gohcl.DecodeBody(f.Body, nil, v); diags.HasErrors() {
		return diags
	}
	return nil
}
