package proxy

import (
	"sync/atomic"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// statusSource reports discovery's state; nil when there is no discovery.
type statusSource func() []stats.ServiceStatus

// discoveryState is what the Server knows of discovery and of its config,
// for the stats port.
type discoveryState struct {
	services   atomic.Pointer[statusSource]
	configHash atomic.Pointer[string]
}

// SetServiceStatus gives the Server the function that reports discovery's
// state, for readiness and the stats port's /metrics and /discovery.
func (s *Server) SetServiceStatus(fn func() []stats.ServiceStatus) {
	src := statusSource(fn)
	s.discovery.services.Store(&src)
}

// SetConfigHash records the SHA-256 of the running configuration file, for
// /metrics and /discovery.
func (s *Server) SetConfigHash(sum string) { s.discovery.configHash.Store(&sum) }

// serviceStatus calls discovery's status function. Not under s.mu:
// discovery's status may wait on a watch whose update is waiting for s.mu.
func (s *Server) serviceStatus() []stats.ServiceStatus {
	if fn := s.discovery.services.Load(); fn != nil {
		return (*fn)()
	}
	return nil
}

// discoveryNotReady says why discovery keeps the Server from being ready:
// a Service whose EndpointSlices were never listed. An API server that
// stops answering later does not: every proxy would turn unready at once
// and take the whole Service down, while the last known addresses still
// serve. /readyz reports it in its body instead (warning).
func discoveryNotReady(services []stats.ServiceStatus) (blocking, warning string) {
	for _, st := range services {
		switch {
		case !st.Synced:
			return "EndpointSlices of service " + st.Namespace + "/" + st.Name + " not listed yet", ""
		case !st.Healthy && warning == "":
			warning = "serving the last known addresses of " + st.Namespace + "/" + st.Name + ": " + st.LastError
		}
	}
	return "", warning
}
