package kubetest_test

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
)

const widgetCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.kubetest.example.com
spec:
  group: kubetest.example.com
  names:
    kind: Widget
    listKind: WidgetList
    plural: widgets
    singular: widget
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size:
                  type: integer
`

const widget = `
apiVersion: kubetest.example.com/v1
kind: Widget
metadata:
  name: w
spec:
  size: 3
`

// Once ApplyCRDs returns, objects of the new kind are admitted and checked
// against its schema, strictly.
func TestApplyCRDs(t *testing.T) {
	cp := kubetest.Start(t)
	crds := cp.ApplyCRDs(t, []byte(widgetCRD))
	if len(crds) != 1 || crds[0].GetName() != "widgets.kubetest.example.com" {
		t.Fatalf("ApplyCRDs returned %v, want the one CRD", crds)
	}
	if got := cp.ServerDryRun(t, []byte(widget)); len(got) != 1 || got[0].GetKind() != "Widget" {
		t.Fatalf("ServerDryRun returned %v, want the Widget", got)
	}
	typo := strings.Replace(widget, "size:", "sizes:", 1)
	if _, err := kubetest.ServerDryRunErr(cp, t.Context(), []byte(typo)); err == nil || !strings.Contains(err.Error(), ".spec.sizes: field not declared in schema") {
		t.Errorf("ServerDryRun with spec.sizes: %v, want .spec.sizes: field not declared in schema", err)
	}
}
