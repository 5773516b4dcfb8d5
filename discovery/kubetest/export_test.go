package kubetest

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ServerDryRunErr is ServerDryRun returning the error instead of failing,
// for a test of what the server refuses.
func ServerDryRunErr(cp *ControlPlane, ctx context.Context, objects []byte) ([]*unstructured.Unstructured, error) {
	return cp.apply(ctx, objects, true)
}
