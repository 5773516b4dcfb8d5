package discovery

import (
	"context"
	"log/slog"
	"sync"

	"k8s.io/client-go/kubernetes"
)

// ServiceKey names a Service.
type ServiceKey struct{ Namespace, Name string }

// Services runs one EndpointSlices watch per wanted Service, and starts and
// stops watches as the configuration's set of Services changes.
type Services struct {
	client   kubernetes.Interface
	logger   *slog.Logger
	onChange func(ServiceKey, map[string]Endpoint)

	mu      sync.Mutex // guards running
	running map[ServiceKey]*serviceWatch
}

type serviceWatch struct {
	es     *EndpointSlices
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServices returns a Services that reports every change of a Service's
// endpoints to onChange, keyed by pod name, as EndpointSlicesOptions.OnChange
// describes. Calls for one Service never overlap; calls for two may.
func NewServices(client kubernetes.Interface, logger *slog.Logger, onChange func(ServiceKey, map[string]Endpoint)) *Services {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Services{client: client, logger: logger, onChange: onChange, running: map[ServiceKey]*serviceWatch{}}
}

// Set makes the running watches those of wanted: it starts the missing ones
// (under ctx) and stops the others.
func (s *Services) Set(ctx context.Context, wanted []ServiceKey) error {
	var stopped []*serviceWatch
	// Wait for stopped watches without the lock: their last OnChange may
	// be running and Status must not block behind it.
	defer func() {
		for _, w := range stopped {
			<-w.done
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[ServiceKey]bool{}
	for _, k := range wanted {
		want[k] = true
		if s.running[k] != nil {
			continue
		}
		es, err := NewEndpointSlices(EndpointSlicesOptions{
			Client:    s.client,
			Namespace: k.Namespace,
			Service:   k.Name,
			Logger:    s.logger,
			OnChange:  func(eps map[string]Endpoint) { s.onChange(k, eps) },
		})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &serviceWatch{es: es, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(w.done)
			es.Run(wctx)
		}()
		s.running[k] = w
		s.logger.Info("watching EndpointSlices", "namespace", k.Namespace, "service", k.Name)
	}
	for k, w := range s.running {
		if !want[k] {
			w.cancel()
			stopped = append(stopped, w)
			delete(s.running, k)
			s.logger.Info("stopped watching EndpointSlices", "namespace", k.Namespace, "service", k.Name)
		}
	}
	return nil
}

// WaitForSync waits until every running watch has listed its Service, or
// ctx ends; it reports whether all did.
func (s *Services) WaitForSync(ctx context.Context) bool {
	s.mu.Lock()
	watches := make([]*EndpointSlices, 0, len(s.running))
	for _, w := range s.running {
		watches = append(watches, w.es)
	}
	s.mu.Unlock()
	for _, es := range watches {
		if !es.WaitForSync(ctx) {
			return false
		}
	}
	return true
}

// Status reports every running watch's state.
func (s *Services) Status() map[ServiceKey]Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[ServiceKey]Status, len(s.running))
	for k, w := range s.running {
		out[k] = w.es.Status()
	}
	return out
}

// Stop stops every watch.
func (s *Services) Stop() { s.Set(context.Background(), nil) }
