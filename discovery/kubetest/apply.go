package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Apply creates or updates every object in objects, a stream of YAML
// documents or JSON objects (a v1 List is expanded), in order, with
// server-side apply (field manager "kubetest", conflicts forced) and strict
// field validation: unknown or duplicate fields are errors. Namespaced
// objects without a namespace go to "default". It goes through every object
// and then fails t listing each one the server refused; otherwise it returns
// the objects as stored.
func (cp *ControlPlane) Apply(t testing.TB, objects []byte) []*unstructured.Unstructured {
	t.Helper()
	out, err := cp.apply(t.Context(), objects, false)
	if err != nil {
		t.Fatalf("kubetest: apply: %v", err)
	}
	return out
}

// ServerDryRun is Apply in dry-run mode (dryRun=All): the API server
// defaults, validates and admits each object and stores nothing. It fails t
// listing every object the server refused; otherwise it returns the objects
// as the server would have stored them. Objects that depend on each other
// (a Namespace and what is in it, a CRD and its resources) must be created
// for real first, as with kubectl apply --dry-run=server.
func (cp *ControlPlane) ServerDryRun(t testing.TB, objects []byte) []*unstructured.Unstructured {
	t.Helper()
	out, err := cp.apply(t.Context(), objects, true)
	if err != nil {
		t.Fatalf("kubetest: server dry run: %v", err)
	}
	return out
}

func (cp *ControlPlane) apply(ctx context.Context, objects []byte, dryRun bool) ([]*unstructured.Unstructured, error) {
	objs, err := decodeObjects(objects)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return nil, err
	}
	var results []*unstructured.Unstructured
	var errs []error
	for i, obj := range objs {
		res, err := applyObject(ctx, mapper, dyn, obj, dryRun)
		if err != nil {
			errs = append(errs, fmt.Errorf("object %d (%s %s): %w", i+1, obj.GroupVersionKind(), objectName(obj), err))
			continue
		}
		results = append(results, res)
	}
	return results, errors.Join(errs...)
}

func applyObject(ctx context.Context, mapper *restmapper.DeferredDiscoveryRESTMapper, dyn dynamic.Interface, obj *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	gvk := obj.GroupVersionKind()
	if gvk.Kind == "" || gvk.Version == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	if obj.GetName() == "" {
		return nil, errors.New("metadata.name is required: apply cannot generate names")
	}
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		mapper.Reset() // a CRD created since the last discovery, or by an earlier object
		mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = dyn.Resource(mapping.Resource).Namespace(ns)
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: "kubetest", Force: &force, FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
}

// decodeObjects splits a YAML or JSON stream into objects, skipping empty
// documents and expanding Lists.
func decodeObjects(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if !u.IsList() {
			objs = append(objs, u)
			continue
		}
		list, err := u.ToList()
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		for i := range list.Items {
			objs = append(objs, &list.Items[i])
		}
	}
}

func objectName(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}
