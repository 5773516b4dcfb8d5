package statsport

import (
	"encoding/json"
	"net/http"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Locator is a Source that can say where keys live (*proxy.Server is one):
// /locate answers only for such a Source.
type Locator interface {
	// Locate returns where key lives in every pool, or only in pool when
	// it is not ""; the error is for a pool that does not exist.
	Locate(key []byte, pool string) ([]stats.Location, error)
}

// maxLocateKeys bounds the keys one /locate request may ask about.
const maxLocateKeys = 1000

// serveLocate answers GET /locate?key=K[&key=K2...][&pool=P] with a JSON
// array of where each key lives, key by key and pool by pool.
func (ss *Server) serveLocate(w http.ResponseWriter, r *http.Request) {
	loc, ok := ss.src.(Locator)
	if !ok {
		http.Error(w, "this stats port cannot locate keys", http.StatusNotImplemented)
		return
	}
	q := r.URL.Query()
	keys, pool := q["key"], q.Get("pool")
	switch {
	case len(keys) == 0:
		http.Error(w, "no key: ask /locate?key=KEY (key may be repeated, pool=POOL is optional)", http.StatusBadRequest)
		return
	case len(keys) > maxLocateKeys:
		http.Error(w, "too many keys: at most 1000 per request", http.StatusBadRequest)
		return
	}
	out := []stats.Location{}
	for _, k := range keys {
		l, err := loc.Locate([]byte(k), pool)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out = append(out, l...)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}
