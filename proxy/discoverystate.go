package proxy

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ServiceStatus is the state of the watch on one Service's EndpointSlices,
// as discovery reports it.
type ServiceStatus struct {
	Service
	Synced       bool      `json:"synced"`                  // the first list arrived
	Healthy      bool      `json:"healthy"`                 // the last call to the API server succeeded
	LastError    string    `json:"last_error,omitempty"`    // the last API error, "" if none
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`  // when it happened
	LastChangeAt time.Time `json:"last_change_at,omitzero"` // when the Service's endpoints last changed
	Endpoints    int       `json:"endpoints"`
}

// statusSource reports discovery's state; nil when there is no discovery.
type statusSource func() []ServiceStatus

// discoveryState is what the Server knows of discovery and of its config.
type discoveryState struct {
	services   atomic.Pointer[statusSource]
	configHash atomic.Pointer[string]
}

// SetServiceStatus gives the Server the function that reports discovery's
// state, for /readyz, /metrics and /discovery on the stats port.
func (s *Server) SetServiceStatus(fn func() []ServiceStatus) {
	src := statusSource(fn)
	s.discovery.services.Store(&src)
}

// SetConfigHash records the SHA-256 of the running configuration file, for
// /metrics and /discovery.
func (s *Server) SetConfigHash(sum string) { s.discovery.configHash.Store(&sum) }

func (s *Server) serviceStatus() []ServiceStatus {
	if fn := s.discovery.services.Load(); fn != nil {
		return (*fn)()
	}
	return nil
}

// discoveryNotReady says why discovery keeps the Server from being ready:
// a Service whose EndpointSlices were never listed. An API server that
// stops answering later does not: every proxy would turn unready at once
// and take the whole Service down, while the last known addresses still
// serve. /readyz reports it in its body instead.
func (s *Server) discoveryNotReady() (blocking, warning string) {
	for _, st := range s.serviceStatus() {
		switch {
		case !st.Synced:
			return "EndpointSlices of service " + st.Namespace + "/" + st.Name + " not listed yet", ""
		case !st.Healthy && warning == "":
			warning = "serving the last known addresses of " + st.Namespace + "/" + st.Name + ": " + st.LastError
		}
	}
	return "", warning
}

// discoveryReport is the /discovery document.
type discoveryReport struct {
	ConfigSHA256  string          `json:"config_sha256,omitempty"`
	Reloads       int64           `json:"reloads"`
	ReloadsFailed int64           `json:"reloads_rejected"`
	Services      []ServiceStatus `json:"services"`
	Servers       []AddressStatus `json:"servers"`
}

func (ss *StatsServer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	s := ss.srv
	rep := discoveryReport{Services: s.serviceStatus(), Servers: s.Addresses()}
	if h := s.discovery.configHash.Load(); h != nil {
		rep.ConfigSHA256 = *h
	}
	rep.Reloads, rep.ReloadsFailed = s.ReloadCounts()
	if rep.Services == nil {
		rep.Services = []ServiceStatus{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}

var (
	serviceLabels    = []string{"namespace", "service"}
	discoverySynced  = metricDesc("discovery_synced", "1 once the Service's EndpointSlices were listed.", serviceLabels)
	discoveryHealthy = metricDesc("discovery_healthy", "1 while the last call to the API server for the Service succeeded.", serviceLabels)
	discoveryEndpts  = metricDesc("discovery_endpoints", "Pods of the Service in its EndpointSlices.", serviceLabels)
	discoveryChanged = metricDesc("discovery_last_change_timestamp_seconds", "When the Service's endpoints last changed.", serviceLabels)
	addressInfo      = metricDesc("server_address_info", "Always 1; address is where the server is dialled now and source where that came from (config, or endpointslice/<name>).", []string{"pool", "server", "address", "source"})
	addressUsable    = metricDesc("server_address_usable", "1 while the server may take requests (its pod is ready and not terminating).", serverLabels)
	addressChanged   = metricDesc("server_address_changed_timestamp_seconds", "When the server's address or usability last changed.", serverLabels)
	configReloads    = metricDesc("config_reloads_total", "Configuration reloads, by result (ok, rejected).", []string{"result"})
	configInfo       = metricDesc("config_info", "Always 1; sha256 is the SHA-256 of the running configuration file.", []string{"sha256"})
	discoveryDescs   = []*prometheus.Desc{discoverySynced, discoveryHealthy, discoveryEndpts, discoveryChanged, addressInfo, addressUsable, addressChanged, configReloads, configInfo}
)

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectDiscovery sends the discovery and configuration metrics.
func (s *Server) collectDiscovery(ch chan<- prometheus.Metric) {
	for _, st := range s.serviceStatus() {
		ns, name := labelValue(st.Namespace), labelValue(st.Name)
		ch <- prometheus.MustNewConstMetric(discoverySynced, prometheus.GaugeValue, boolValue(st.Synced), ns, name)
		ch <- prometheus.MustNewConstMetric(discoveryHealthy, prometheus.GaugeValue, boolValue(st.Healthy), ns, name)
		ch <- prometheus.MustNewConstMetric(discoveryEndpts, prometheus.GaugeValue, float64(st.Endpoints), ns, name)
		if !st.LastChangeAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(discoveryChanged, prometheus.GaugeValue, float64(st.LastChangeAt.UnixNano())/1e9, ns, name)
		}
	}
	for _, a := range s.Addresses() {
		pool, srv := labelValue(a.Pool), labelValue(a.Server)
		ch <- prometheus.MustNewConstMetric(addressInfo, prometheus.GaugeValue, 1, pool, srv, labelValue(a.Addr), labelValue(a.Source))
		ch <- prometheus.MustNewConstMetric(addressUsable, prometheus.GaugeValue, boolValue(a.Usable), pool, srv)
		ch <- prometheus.MustNewConstMetric(addressChanged, prometheus.GaugeValue, float64(a.ChangedAt.UnixNano())/1e9, pool, srv)
	}
	ok, rejected := s.ReloadCounts()
	ch <- prometheus.MustNewConstMetric(configReloads, prometheus.CounterValue, float64(ok), "ok")
	ch <- prometheus.MustNewConstMetric(configReloads, prometheus.CounterValue, float64(rejected), "rejected")
	if h := s.discovery.configHash.Load(); h != nil {
		ch <- prometheus.MustNewConstMetric(configInfo, prometheus.GaugeValue, 1, *h)
	}
}
