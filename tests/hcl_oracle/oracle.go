// The reference for imgbake's HCL: hashicorp/hcl 2.14 and go-cty from Debian's packages
// (golang-github-hashicorp-hcl-v2-dev), built at test time, never linked into imgbake.
// It reads cases separated by "\n====\n" on stdin and prints one line per case: the value of
// an expression (or "ERROR line:col summary"), with MODE=file the diagnostics of a file, or
// with MODE=json a file of HCL's JSON syntax read with a Packer-like schema (jsonSchemas):
// its diagnostics, then its blocks and the value of each argument; or with MODE=dynblock a
// native file whose dynamic blocks hcl's dynblock extension expands (dynSchema), printed so.
// tests/unit/test_hcl_differential.cpp prints imgbake's answers the same way and compares.
package main

import (
	"fmt"
	"io/ioutil"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"sort"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

func main() {
	all, _ := ioutil.ReadAll(os.Stdin)
	for _, part := range strings.Split(string(all), "\n====\n") {
		one([]byte(part))
	}
}

func one(src []byte) {
	if os.Getenv("MODE") == "json" {
		jsonCase(src)
		return
	}
	if os.Getenv("MODE") == "dynblock" {
		dynCase(src)
		return
	}
	if os.Getenv("MODE") == "file" {
		f, diags := hclsyntax.ParseConfig(src, "test.hcl", hcl.Pos{Line: 1, Column: 1, Byte: 0})
		out := ""
		for _, d := range diags {
			out += fmt.Sprintf("%d:%d-%d:%d %s; ", d.Subject.Start.Line, d.Subject.Start.Column, d.Subject.End.Line, d.Subject.End.Column, d.Summary)
		}
		if f != nil {
			b := f.Body.(*hclsyntax.Body)
			out += fmt.Sprintf("attrs=%d blocks=%d", len(b.Attributes), len(b.Blocks))
		}
		fmt.Println(out)
		return
	}
	expr, diags := hclsyntax.ParseExpression(src, "test.hcl", hcl.Pos{Line: 1, Column: 1, Byte: 0})
	if diags.HasErrors() {
		fmt.Printf("ERROR %d:%d %s\n", diags[0].Subject.Start.Line, diags[0].Subject.Start.Column, diags[0].Summary)
		return
	}
	v, diags := expr.Value(ctx())
	if diags.HasErrors() {
		fmt.Printf("ERROR %d:%d %s\n", diags[0].Subject.Start.Line, diags[0].Subject.Start.Column, diags[0].Summary)
		return
	}
	fmt.Println(render(v))
}

func quote(s string) string {
	out := "\""
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch c {
		case '"':
			out += "\\\""
		case '\\':
			out += "\\\\"
		case '\n':
			out += "\\n"
		case '\r':
			out += "\\r"
		case '\t':
			out += "\\t"
		case '$', '%':
			out += string(c)
			if i+1 < len(rs) && rs[i+1] == '{' {
				out += string(c)
			}
		default:
			out += string(c)
		}
	}
	return out + "\""
}

func render(v cty.Value) string {
	if !v.IsKnown() {
		return "(unknown)"
	}
	if v.IsNull() {
		return "null"
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return quote(v.AsString())
	case t == cty.Number:
		s, _ := convert.Convert(v, cty.String)
		return s.AsString()
	case t == cty.Bool:
		if v.True() {
			return "true"
		}
		return "false"
	case t.IsListType() || t.IsSetType() || t.IsTupleType():
		out := "["
		i := 0
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if i > 0 {
				out += ", "
			}
			out += render(e)
			i++
		}
		return out + "]"
	default:
		out := "{"
		i := 0
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if i > 0 {
				out += ", "
			}
			out += quote(k.AsString()) + " = " + render(e)
			i++
		}
		return out + "}"
	}
}

func ctx() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: map[string]function.Function{
		"upper": stdlib.UpperFunc, "lower": stdlib.LowerFunc, "max": stdlib.MaxFunc, "min": stdlib.MinFunc,
		"join": stdlib.JoinFunc, "length": stdlib.LengthFunc, "concat": stdlib.ConcatFunc,
		"tonumber": stdlib.MakeToFunc(cty.Number), "tostring": stdlib.MakeToFunc(cty.String), "tobool": stdlib.MakeToFunc(cty.Bool),
		// The part of cty's stdlib that Packer uses as it is (imgbake's standard_functions).
		"format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc, "replace": stdlib.ReplaceFunc,
		"regex_replace": stdlib.RegexReplaceFunc, "regex": stdlib.RegexFunc, "split": stdlib.SplitFunc,
		"trimspace": stdlib.TrimSpaceFunc, "trim": stdlib.TrimFunc, "trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc, "chomp": stdlib.ChompFunc, "substr": stdlib.SubstrFunc,
		"title": stdlib.TitleFunc, "strrev": stdlib.ReverseFunc, "indent": stdlib.IndentFunc,
		"contains": stdlib.ContainsFunc, "keys": stdlib.KeysFunc, "values": stdlib.ValuesFunc,
		"merge": stdlib.MergeFunc, "flatten": stdlib.FlattenFunc, "distinct": stdlib.DistinctFunc,
		"element": stdlib.ElementFunc, "coalescelist": stdlib.CoalesceListFunc, "reverse": stdlib.ReverseListFunc,
		"sort": stdlib.SortFunc, "slice": stdlib.SliceFunc, "zipmap": stdlib.ZipmapFunc, "compact": stdlib.CompactFunc,
		"tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)), "toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)), "abs": stdlib.AbsoluteFunc,
		"ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc, "jsonencode": stdlib.JSONEncodeFunc,
		"jsondecode": stdlib.JSONDecodeFunc, "formatdate": stdlib.FormatDateFunc,
		"try": tryfunc.TryFunc, "can": tryfunc.CanFunc,
		"setunion": stdlib.SetUnionFunc, "setintersection": stdlib.SetIntersectionFunc,
		"setsubtract": stdlib.SetSubtractFunc, "setproduct": stdlib.SetProductFunc, "chunklist": stdlib.ChunklistFunc,
		"range": stdlib.RangeFunc, "log": stdlib.LogFunc, "pow": stdlib.PowFunc, "signum": stdlib.SignumFunc,
		"parseint": stdlib.ParseIntFunc, "csvdecode": stdlib.CSVDecodeFunc, "timeadd": stdlib.TimeAddFunc,
	}, Variables: map[string]cty.Value{
		"var": cty.ObjectVal(map[string]cty.Value{
			"name":  cty.StringVal("web"),
			"count": cty.NumberIntVal(3),
			"zones": cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}),
			"disks": cty.TupleVal([]cty.Value{
				cty.ObjectVal(map[string]cty.Value{"size": cty.NumberIntVal(10), "type": cty.StringVal("ssd")}),
				cty.ObjectVal(map[string]cty.Value{"size": cty.NumberIntVal(20), "type": cty.StringVal("hdd")}),
			}),
			"tags":  cty.MapVal(map[string]cty.Value{"team": cty.StringVal("ops"), "env": cty.StringVal("dev")}),
			"empty": cty.NullVal(cty.String),
		}),
	}}
}

// The schemas of MODE=json, by block type ("" the file): arguments, then block types with
// their labels; a block type without an entry holds arguments only (JustAttributes).
type jsonSchema struct {
	attrs  []string
	blocks map[string][]string
}

var jsonSchemas = map[string]jsonSchema{
	"":                {nil, map[string][]string{"variable": {"name"}, "source": {"type", "name"}, "build": nil, "locals": nil, "packer": nil}},
	"variable":        {[]string{"type", "default", "description", "sensitive"}, map[string][]string{"validation": nil}},
	"validation":      {[]string{"condition", "error_message"}, nil},
	"packer":          {[]string{"required_version"}, map[string][]string{"required_plugins": nil}},
	"build":           {[]string{"name", "description", "sources"}, map[string][]string{"source": {"name"}, "provisioner": {"type"}, "post-processor": {"type"}, "post-processors": nil}},
	"provisioner":     {[]string{"inline", "only", "except", "max_retries", "environment_vars"}, nil},
	"post-processors": {nil, map[string][]string{"post-processor": {"type"}}},
}

func jsonCase(src []byte) {
	f, diags := hcljson.Parse(src, "test.pkr.json")
	var out []string
	if !diags.HasErrors() {
		out = jsonBody(f.Body, "", &diags)
	}
	fmt.Println(strings.Join(diagLines(diags), "") + strings.Join(out, " "))
}

// Diagnostics sorted, each once (hcl's JSON Content reports a mistyped body twice).
func diagLines(diags hcl.Diagnostics) []string {
	seen := map[string]bool{}
	var lines []string
	for _, d := range diags {
		l := fmt.Sprintf("%d:%d-%d:%d %s; ", d.Subject.Start.Line, d.Subject.Start.Column, d.Subject.End.Line, d.Subject.End.Column, d.Summary)
		if !seen[l] {
			seen[l] = true
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

func jsonBody(body hcl.Body, typ string, diags *hcl.Diagnostics) []string {
	var out []string
	sch, ok := jsonSchemas[typ]
	var attrs hcl.Attributes
	var blocks hcl.Blocks
	if !ok {
		a, d := body.JustAttributes()
		*diags = append(*diags, d...)
		attrs = a
	} else {
		s := &hcl.BodySchema{}
		for _, a := range sch.attrs {
			s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a})
		}
		var names []string
		for b := range sch.blocks {
			names = append(names, b)
		}
		sort.Strings(names)
		for _, b := range names {
			s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: b, LabelNames: sch.blocks[b]})
		}
		c, d := body.Content(s)
		*diags = append(*diags, d...)
		attrs = c.Attributes
		blocks = c.Blocks
	}
	var names []string
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "type" && typ == "variable" {
			t, d := typeexpr.TypeConstraint(attrs[n].Expr)
			if d.HasErrors() {
				out = append(out, fmt.Sprintf("type=ERROR %d:%d %s", d[0].Subject.Start.Line, d[0].Subject.Start.Column, d[0].Summary))
			} else {
				out = append(out, "type="+typeexpr.TypeString(t))
			}
			continue
		}
		v, d := attrs[n].Expr.Value(ctx())
		if d.HasErrors() {
			out = append(out, fmt.Sprintf("%s=ERROR %d:%d %s", n, d[0].Subject.Start.Line, d[0].Subject.Start.Column, d[0].Summary))
		} else {
			out = append(out, n+"="+render(v))
		}
	}
	for _, b := range blocks {
		out = append(out, b.Type+"["+strings.Join(b.Labels, ",")+"]{")
		out = append(out, jsonBody(b.Body, b.Type, diags)...)
		out = append(out, "}")
	}
	return out
}

// MODE=dynblock: the same schema at every level.
var dynSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "a"}, {Name: "b"}, {Name: "name"}, {Name: "size"}, {Name: "value"}},
	Blocks: []hcl.BlockHeaderSchema{{Type: "disk"}, {Type: "tag", LabelNames: []string{"name"}},
		{Type: "rule", LabelNames: []string{"type", "name"}}},
}

func dynCase(src []byte) {
	f, diags := hclsyntax.ParseConfig(src, "test.hcl", hcl.Pos{Line: 1, Column: 1, Byte: 0})
	var out []string
	if !diags.HasErrors() {
		out = dynBody(dynblock.Expand(f.Body, ctx()), &diags)
	}
	fmt.Println(strings.Join(diagLines(diags), "") + strings.Join(out, " "))
}

func dynBody(body hcl.Body, diags *hcl.Diagnostics) []string {
	var out []string
	c, d := body.Content(dynSchema)
	*diags = append(*diags, d...)
	var names []string
	for n := range c.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v, d := c.Attributes[n].Expr.Value(ctx())
		if d.HasErrors() {
			out = append(out, fmt.Sprintf("%s=ERROR %d:%d %s", n, d[0].Subject.Start.Line, d[0].Subject.Start.Column, d[0].Summary))
		} else {
			out = append(out, n+"="+render(v))
		}
	}
	for _, b := range c.Blocks {
		out = append(out, b.Type+"["+strings.Join(b.Labels, ",")+"]{")
		out = append(out, dynBody(b.Body, diags)...)
		out = append(out, "}")
	}
	return out
}
