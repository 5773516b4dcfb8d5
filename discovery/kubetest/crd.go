package kubetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// ModuleFile returns the contents of file, a slash-separated path inside
// the Go module path at version: for example the CRDs that a project
// publishes in its repository, so that a test checks objects against the
// real ones without a copy kept beside it. The module comes from the module
// cache, where `go mod download` puts it through the module proxy the first
// time, as Binaries gets the control plane's modules; no go.mod is touched.
// ModuleFile fails t if the module or the file cannot be had.
func ModuleFile(t testing.TB, path, version, file string) []byte {
	t.Helper()
	data, err := moduleFile(t.Context(), t.TempDir(), path, version, file)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return data
}

// moduleFile is ModuleFile, running the go command in dir, which must not
// be inside a module.
func moduleFile(ctx context.Context, dir, path, version, file string) ([]byte, error) {
	name := filepath.FromSlash(file)
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("module %s@%s: %q is not a path inside the module", path, version, file)
	}
	goBin, err := goCommand()
	if err != nil {
		return nil, err
	}
	// On failure, -json still prints the module with its Error.
	out, runErr := runGo(ctx, goBin, dir, "mod", "download", "-json", path+"@"+version)
	var dl struct{ Dir, Error string }
	if err := json.Unmarshal(out, &dl); err != nil {
		return nil, errors.Join(fmt.Errorf("go mod download %s@%s: %w", path, version, err), runErr)
	}
	if dl.Error != "" {
		return nil, fmt.Errorf("go mod download %s@%s: %s", path, version, dl.Error)
	}
	if runErr != nil {
		return nil, runErr
	}
	data, err := os.ReadFile(filepath.Join(dl.Dir, name))
	if err != nil {
		return nil, fmt.Errorf("module %s@%s: %w", path, version, err)
	}
	return data, nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ApplyCRDs applies crds, a stream of apiextensions.k8s.io/v1
// CustomResourceDefinitions, as Apply does, and waits until the API server
// serves each: its Established condition is True and discovery lists its
// resource in every served version, so that Apply and ServerDryRun take
// objects of its kind at once. It fails t on an object that is not a CRD
// and after WaitTimeout for each CRD; otherwise it returns the CRDs as
// stored.
func (cp *ControlPlane) ApplyCRDs(t testing.TB, crds []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeObjects(crds)
	if err != nil {
		t.Fatalf("kubetest: apply CRDs: %v", err)
	}
	for _, o := range objs {
		if gvk := o.GroupVersionKind(); gvk.Group != crdResource.Group || gvk.Kind != "CustomResourceDefinition" {
			t.Fatalf("kubetest: apply CRDs: %s %s is not a CustomResourceDefinition", gvk, objectName(o))
		}
	}
	applied := cp.Apply(t, crds)
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	for _, crd := range applied {
		cp.poll(t, "CustomResourceDefinition "+crd.GetName()+" to be served", func(ctx context.Context) (bool, error) {
			got, err := dyn.Resource(crdResource).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !established(got) {
				return false, nil
			}
			return discovered(dc, got)
		})
	}
	return applied
}

// established reports whether the CRD's Established condition is True.
func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// discovered reports whether discovery lists the CRD's resource in each
// version it serves.
func discovered(dc discovery.DiscoveryInterface, crd *unstructured.Unstructured) (bool, error) {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		m, _ := v.(map[string]any)
		name, _ := m["name"].(string)
		if served, _ := m["served"].(bool); !served {
			continue
		}
		list, err := dc.ServerResourcesForGroupVersion(group + "/" + name)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == plural }) {
			return false, nil
		}
	}
	return true, nil
}
