// Package templates holds the embedded text templates devbox renders: the
// libvirt domain and its devices, and the cloud-init seed.
// Templates are parsed once and fail on a missing key.
package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

var all = template.Must(template.New("").
	Option("missingkey=error").
	Funcs(template.FuncMap{
		"xml":    escapeXML,
		"quote":  quoteYAML,
		"indent": indent,
	}).
	ParseFS(files, "*.tmpl"))

// Render executes the named template (e.g. "domain.xml.tmpl") with data.
func Render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := all.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("render template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

func escapeXML(v any) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(fmt.Sprint(v))); err != nil {
		return "", err
	}
	return b.String(), nil
}

// quoteYAML writes s as a double-quoted scalar; JSON strings are valid YAML.
func quoteYAML(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// indent prefixes every line of s with n spaces (for YAML block scalars).
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}
