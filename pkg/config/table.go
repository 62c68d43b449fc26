package config

import (
	"fmt"
	"io"
	"strings"
)

// PrintTable writes the table as Markdown: every variable when binary is empty,
// else only binary's. docs/configuration.md holds the full table.
func PrintTable(w io.Writer, binary string) {
	fmt.Fprintln(w, "| variable | flag | binaries | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, v := range All() {
		if binary != "" && !v.ReadBy(binary) {
			continue
		}
		fmt.Fprintf(w, "| `%s` | `--%s` | %s | %s | %s |\n", v.Env, v.Flag(), strings.Join(v.Binaries, ", "), tableDefault(v), v.Usage)
	}
}

// tableDefault is the default column: one value when every reader has the same,
// else each binary's ("api: `:8000`; worker: `:8001`").
func tableDefault(v Var) string {
	same := true
	for _, b := range v.Binaries {
		same = same && v.Default(b) == v.Default(v.Binaries[0])
	}
	if same {
		return quoteDefault(v.Default(v.Binaries[0]))
	}
	parts := make([]string, len(v.Binaries))
	for i, b := range v.Binaries {
		parts[i] = b + ": " + quoteDefault(v.Default(b))
	}
	return strings.Join(parts, "; ")
}

// quoteDefault renders a default for Markdown: in backquotes, or "(empty)".
func quoteDefault(s string) string {
	if s == "" {
		return "(empty)"
	}
	return "`" + s + "`"
}
