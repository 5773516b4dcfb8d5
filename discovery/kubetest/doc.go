// Package kubetest runs a real Kubernetes control plane for end-to-end tests
// of shardproxy's discovery, the way net/http/httptest serves tests of
// net/http: etcd, kube-apiserver and kube-controller-manager (with the
// statefulset, endpointslice and garbagecollector controllers) as local
// processes, and the test itself playing scheduler and kubelet.
//
// Binaries builds the three programs from their Go modules on first use and
// keeps them in a cache directory outside the repository, keyed by version
// (see CacheDir). The first build takes 8 to 15 minutes on two cores; later
// runs start a control plane in a few seconds. Pre-build with
//
//	go test ./discovery/kubetest -run TestBuild -timeout 30m
//
// Start brings up a control plane on free loopback ports with its data and
// logs under t.TempDir(), and tears it down in t's cleanup. When the test
// fails, the tail of every component's log is written to the test log.
// ControlPlane.Client is an admin client; Kubeconfig writes a kubeconfig for
// a ServiceAccount with a token from the TokenRequest API, so what the
// program under test does is checked against its RBAC rules. Apply and
// ServerDryRun take multi-document YAML and use server-side apply (for real
// or with dryRun=All) through the dynamic client: no kubectl is needed.
// ApplyCRDs applies CustomResourceDefinitions and waits until the API server
// serves them, and ModuleFile reads a file, such as a published CRD, from a
// Go module fetched into the module cache, so that custom resources are
// checked against the real schema without a copy in the repository.
// WaitEndpointSlices and WaitEndpointReady watch a Service's EndpointSlices
// and return the time they saw the awaited state.
//
// No kubelet runs. A test plays it for the pods a StatefulSet controller
// creates: StartRedisPod binds a Pending pod to a Node (the Binding
// subresource), gives it a network namespace with a veth pair and a fresh /30
// from 198.18.0.0/15 (host side .1, pod side .2), runs redis-server inside it
// on the pod address, and patches the pod status to Running and Ready. The
// EndpointSlice controller then lists the pod. (*Pod).Delete stops the
// processes, removes the namespace and deletes the pod with grace period 0,
// as a kubelet would; the StatefulSet controller recreates it Pending, and
// StartRedisPod brings it back under a new address with the same data
// directory.
//
// Network rules: tests send traffic only to loopback and to the addresses of
// network namespaces they created, inside 198.18.0.0/15 (RFC 2544 benchmark
// space). Each host-side veth forwards what the pod sends it, so pods
// reach each other through the host, as a replica reaches its master; the
// host's own forwarding setting is left alone. A route "unreachable 198.18.0.0/15" stays in place while pods
// exist, so traffic to a deleted pod's address fails at once ("no route to
// host") instead of going to the default gateway. Namespaces are named
// "spk-<index>-<pid>" and their host-side veth "spkh<index>"; leftovers of a test process that no longer runs are removed
// the next time a pod is started. Pods need root and iproute2's ip: a test
// without them fails, it is not skipped (CI runs as root and installs
// iproute2).
//
// Children run in process groups of their own and, on Linux, get SIGKILL
// when the test binary dies (PR_SET_PDEATHSIG), like in proxy/proxytest.
package kubetest
