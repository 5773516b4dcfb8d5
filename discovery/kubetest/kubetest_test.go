package kubetest

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestStagingModules(t *testing.T) {
	gomod := []byte(`module k8s.io/kubernetes

require (
	k8s.io/api v0.0.0
	k8s.io/utils v0.0.0-20260626114624-be93311217bd
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/utils => k8s.io/utils v0.0.0-20260626114624-be93311217bd
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
`)
	got := stagingModules(gomod)
	want := []string{"k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl"}
	if !slices.Equal(got, want) {
		t.Fatalf("stagingModules = %q, want %q", got, want)
	}
	mod := string(wrapperGoMod(got))
	for _, line := range []string{
		"require k8s.io/kubernetes " + KubernetesVersion,
		"\tk8s.io/client-go => k8s.io/client-go " + StagingVersion,
	} {
		if !strings.Contains(mod, line+"\n") {
			t.Errorf("wrapperGoMod has no line %q:\n%s", line, mod)
		}
	}
}

func TestParseNetns(t *testing.T) {
	for _, tc := range []struct {
		name       string
		index, pid int
		ok         bool
	}{
		{"spk-0-1234", 0, 1234, true},
		{"spk-32767-1", 32767, 1, true},
		{"spk-32768-1", 0, 0, false}, // past 198.18.0.0/15
		{"spk-1", 0, 0, false},
		{"spk-a-1", 0, 0, false},
		{"other-1-1", 0, 0, false},
	} {
		index, pid, ok := parseNetns(tc.name)
		if ok != tc.ok || ok && (index != tc.index || pid != tc.pid) {
			t.Errorf("parseNetns(%q) = %d, %d, %v; want %d, %d, %v", tc.name, index, pid, ok, tc.index, tc.pid, tc.ok)
		}
	}
}

func TestReadyAddresses(t *testing.T) {
	yes, no := true, false
	slices := []discoveryv1.EndpointSlice{{
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"198.18.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "redis-0"}},
			{Addresses: []string{"198.18.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: &no},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "redis-1"}},
		},
	}, {
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.10"}}}, // unset means ready
	}}
	want := map[netip.Addr]string{
		netip.MustParseAddr("198.18.0.2"):  "redis-0",
		netip.MustParseAddr("198.18.0.10"): "",
	}
	if got := ReadyAddresses(slices); !maps.Equal(got, want) {
		t.Errorf("ReadyAddresses = %v, want %v", got, want)
	}
}

func TestDecodeObjects(t *testing.T) {
	objs, err := decodeObjects([]byte(`---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
- {apiVersion: v1, kind: Secret, metadata: {name: c, namespace: x}}
---
{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "d"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+" "+objectName(o))
	}
	want := []string{"ConfigMap a", "ConfigMap b", "Secret x/c", "ServiceAccount d"}
	if !slices.Equal(got, want) {
		t.Errorf("decodeObjects = %q, want %q", got, want)
	}
	if _, err := decodeObjects([]byte("a: [")); err == nil {
		t.Error("decodeObjects(bad YAML): no error")
	}
}

// ModuleFile reads from the module cache; sigs.k8s.io/yaml is one of the
// project's own modules, so it is there already, and the test asks no
// module proxy.
func TestModuleFile(t *testing.T) {
	t.Setenv("GOPROXY", "off")
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*sigs\.k8s\.io/yaml (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require sigs.k8s.io/yaml")
	}
	const module = "sigs.k8s.io/yaml"
	version := string(m[1])
	data, err := moduleFile(t.Context(), t.TempDir(), module, version, "go.mod")
	if err != nil || !strings.HasPrefix(string(data), "module "+module+"\n") {
		t.Errorf("moduleFile(%s@%s, go.mod) = %.40q, %v; want its go.mod", module, version, data, err)
	}
	for _, tc := range []struct{ version, file, want string }{
		{version, "no-such-file", "no such file"},
		{version, "../go.mod", "not a path inside the module"},
		{"v1.999.0", "go.mod", "go mod download " + module + "@v1.999.0: "},
	} {
		if _, err := moduleFile(t.Context(), t.TempDir(), module, tc.version, tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("moduleFile(%s@%s, %s): %v, want an error with %q", module, tc.version, tc.file, err, tc.want)
		}
	}
}
