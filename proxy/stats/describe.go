package stats

import (
	"fmt"
	"strings"
)

// Describe is the text of -D for shardproxy version: nutcracker's pool and
// server fields in the layout of nutcracker's -D, nutcracker's top-level
// numbers, then the metrics that only /metrics has, with their labels.
func Describe(version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is shardproxy-%s\n", version)
	for _, sec := range []struct {
		title string
		scope Scope
	}{{"pool stats", PerPool}, {"server stats", PerServer}, {"top-level stats", PerProcess}} {
		fmt.Fprintf(&b, "\n%s:\n", sec.title)
		for i := range Fields {
			if f := &Fields[i]; f.Scope == sec.scope && f.Nutcracker != "" {
				fmt.Fprintf(&b, "  %-19s \"%s\"\n", f.Nutcracker, f.Help)
			}
		}
	}
	b.WriteString("\nmetrics only on /metrics:\n")
	for i := range Fields {
		if f := &Fields[i]; f.Nutcracker == "" {
			fmt.Fprintf(&b, "  %-19s \"%s\"\n", "shardproxy_"+f.Metric+f.Scope.labelSuffix(), f.Help)
		}
	}
	return b.String()
}

// labelSuffix is how Describe shows the scope's labels.
func (s Scope) labelSuffix() string {
	switch s {
	case PerPool:
		return "{pool}"
	case PerServer:
		return "{pool,server}"
	}
	return ""
}
