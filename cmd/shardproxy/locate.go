package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// locateOptions are the flags of `shardproxy locate`.
type locateOptions struct {
	options   // confFile, kubeconfig, namespace, syncTimeout: as the proxy's
	pool      string
	json      bool
	statsAddr string
}

func newLocateFlagSet(o *locateOptions, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shardproxy locate", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.confFile, "c", "conf/nutcracker.yml", "configuration file (nutcracker.yml)")
	fs.StringVar(&o.confFile, "conf-file", "conf/nutcracker.yml", "configuration file (nutcracker.yml)")
	fs.StringVar(&o.pool, "pool", "", "only this pool (default: every pool)")
	fs.BoolVar(&o.json, "json", false, "print the locations as JSON, as the stats port's /locate does")
	fs.StringVar(&o.statsAddr, "stats", "", "ask the running proxy whose stats port is at host:port instead of reading the configuration")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for pools with kubernetes_service (default: the in-cluster service account)")
	fs.StringVar(&o.namespace, "kubernetes-namespace", "", "namespace of kubernetes_service when a pool names none (default: the pod's own namespace, else default)")
	fs.DurationVar(&o.syncTimeout, "discovery-sync-timeout", 10*time.Second, "how long to wait for the first EndpointSlices, group masters and cluster slot maps")
	fs.Usage = func() {
		fmt.Fprintf(out, `Usage: shardproxy locate [-c conf-file] [--pool pool] [--json] [--stats host:port] key...

Prints, for each key and each pool (or the pool asked for), the server that
holds the key and the address it is dialled at now: a pod's IP from its
EndpointSlices, a group's confirmed master, the cluster node serving the
key's slot. Without --stats it reads the configuration and asks discovery
as the proxy does (Kubernetes, Sentinel, Redis Cluster), without listening;
with --stats it asks a running proxy's stats port (GET /locate). Put -- before
keys that start with '-'. Exits 1 when a key has no server that takes
requests now, or on an error; 2 on a usage error.

Options:
`)
		printUsage(fs, out)
	}
	return fs
}

// runLocate is `shardproxy locate`.
func runLocate(args []string, stdout, stderr io.Writer) int {
	var o locateOptions
	fs := newLocateFlagSet(&o, stderr)
	keys, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(keys) == 0 {
		fmt.Fprintln(stderr, "shardproxy locate: no key given (usage: shardproxy locate [-c conf-file] [--pool pool] key...)")
		return 2
	}
	var locs []stats.Location
	if o.statsAddr != "" {
		locs, err = locateRemote(o.statsAddr, keys, o.pool)
	} else {
		locs, err = locateLocal(o, keys, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "shardproxy locate: %v\n", err)
		return 1
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(locs)
	} else {
		printLocations(stdout, locs)
	}
	status := 0
	for _, l := range locs {
		if why := unlocated(l); why != "" {
			fmt.Fprintf(stderr, "shardproxy locate: %q in pool %s: %s\n", l.Key, l.Pool, why)
			status = 1
		}
	}
	return status
}

// parseInterspersed parses fs's flags wherever they are among args, and
// returns the other arguments; after "--" every argument is one of those.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			return append(rest, left...), nil
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// unlocated says why no request for the key at l would be served now, ""
// when one would.
func unlocated(l stats.Location) string {
	switch {
	case l.Error != "":
		return l.Error
	case l.Addr == "":
		return "the address of server " + l.Server + " is not known: " + l.Reason
	case !l.Usable:
		return "server " + l.Server + " takes no requests: " + l.Reason
	}
	return ""
}

// locateLocal reads the configuration, builds a Server over it with the
// discovery the proxy runs (without listening), waits for discovery's first
// answers and locates keys there.
func locateLocal(o locateOptions, keys []string, stderr io.Writer) ([]stats.Location, error) {
	data, err := config.ReadFile(o.confFile)
	var cfg *config.Config
	if err == nil {
		cfg, err = config.ParseFile(o.confFile, data)
	}
	if err != nil {
		return nil, fmt.Errorf("configuration file '%s' is invalid: %w", o.confFile, err)
	}
	if o.pool != "" && !hasPool(cfg, o.pool) {
		return nil, fmt.Errorf("no pool %q in %s", o.pool, o.confFile)
	}
	// Discovery's warnings say why an address may be unknown.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ws, err := newWatchedServer(cfg, o.options, logger)
	if err != nil {
		return nil, fmt.Errorf("configuration refused: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		ws.srv.Shutdown(sctx)
		if ws.services != nil {
			ws.services.Stop()
		}
	}()
	began := time.Now()
	if err := ws.startDiscovery(ctx, o.options, logger); err != nil {
		return nil, fmt.Errorf("kubernetes discovery: %w", err)
	}
	defer ws.stop()
	deadline := began.Add(o.syncTimeout)
	ws.waitEndpoints(deadline)
	waitGroupsConfirmed(ws.srv, deadline)
	var out []stats.Location
	for _, k := range keys {
		l, err := ws.srv.Locate([]byte(k), o.pool)
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	return out, nil
}

func hasPool(cfg *config.Config, name string) bool {
	for _, p := range cfg.Pools {
		if p.Name == name {
			return true
		}
	}
	return false
}

// waitEndpoints waits until the endpoints of every watched Service were
// handed to the Server, or until deadline: a watch reports its first list
// just before it hands it on.
func (ws *watchedServer) waitEndpoints(deadline time.Time) {
	for {
		ws.mu.Lock()
		missing := false
		for _, k := range serviceKeys(ws.srv) {
			if !ws.delivered[k] {
				missing = true
			}
		}
		ws.mu.Unlock()
		if !missing || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGroupsConfirmed waits until every group's master is confirmed (ROLE
// there said master, just after discovery named it), or until deadline.
func waitGroupsConfirmed(srv *proxy.Server, deadline time.Time) {
	var snap stats.Snapshot
	for {
		srv.Snapshot(&snap)
		confirmed := true
		for _, p := range snap.Pools {
			for _, s := range p.Servers {
				if s.Group != nil && !s.Group.Confirmed {
					confirmed = false
				}
			}
		}
		if confirmed || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// locateRemote asks the stats port at addr's /locate.
func locateRemote(addr string, keys []string, pool string) ([]stats.Location, error) {
	q := url.Values{"key": keys}
	if pool != "" {
		q.Set("pool", pool)
	}
	u := "http://" + addr + "/locate?" + q.Encode()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return nil, fmt.Errorf("asking the stats port: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the stats port's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the stats port at %s answers %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	var locs []stats.Location
	if err := json.Unmarshal(body, &locs); err != nil {
		return nil, fmt.Errorf("the stats port at %s: %w", addr, err)
	}
	return locs, nil
}

// printLocations prints one aligned line per location.
func printLocations(w io.Writer, locs []stats.Location) {
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tPOOL\tSERVER\tADDRESS\tNOTES")
	for _, l := range locs {
		server, addr := l.Server, l.Addr
		if server == "" {
			server = "-"
		}
		if addr == "" {
			addr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Key, l.Pool, server, addr, strings.Join(locationNotes(l), ", "))
	}
	tw.Flush()
	for line := range strings.Lines(table.String()) {
		io.WriteString(w, strings.TrimRight(line, " \n")+"\n")
	}
}

// locationNotes are what a line says beside the server and address.
func locationNotes(l stats.Location) []string {
	var notes []string
	if l.Slot != nil {
		notes = append(notes, fmt.Sprintf("slot %d", *l.Slot))
	}
	if l.HashTag != "" {
		notes = append(notes, fmt.Sprintf("hash tag %q", l.HashTag))
	}
	if l.NodeID != "" {
		notes = append(notes, "node "+l.NodeID)
	}
	if l.Master != "" {
		notes = append(notes, "confirmed master")
	}
	if l.Configured != "" && l.Configured != l.Addr && l.Configured != l.Server {
		notes = append(notes, "configured "+l.Configured)
	}
	if l.Source != "" && l.Source != "config" {
		notes = append(notes, "from "+l.Source)
	}
	if len(l.Replicas) > 0 {
		notes = append(notes, "replicas "+strings.Join(l.Replicas, " "))
	}
	if len(l.ReadReplicas) > 0 {
		notes = append(notes, "reads from "+strings.Join(l.ReadReplicas, " "))
	}
	if why := unlocated(l); why != "" {
		notes = append(notes, "NOT SERVED: "+why)
	}
	return notes
}
