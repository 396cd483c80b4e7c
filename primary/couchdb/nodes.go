package couchdb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// splitNodeURLs splits New's URL argument into the URLs of the nodes it
// names: one URL, or several separated by commas. A comma splits only where
// the next URL starts ("http://" or "https://"), so a password may hold one.
func splitNodeURLs(raw string) []string {
	var out []string
	rest := strings.TrimSpace(raw)
	for {
		cut := -1
		for i := 0; i < len(rest); i++ {
			if rest[i] != ',' {
				continue
			}
			next := strings.TrimSpace(rest[i+1:])
			if strings.HasPrefix(next, "http://") || strings.HasPrefix(next, "https://") {
				cut = i
				break
			}
		}
		if cut < 0 {
			out = append(out, strings.TrimSpace(rest))
			return out
		}
		out = append(out, strings.TrimSpace(rest[:cut]))
		rest = strings.TrimSpace(rest[cut+1:])
	}
}

// node is where a node answers: scheme and host; the path prefix and the
// credentials are those of the first URL, shared by every node.
type node struct{ scheme, host string }

// parseNodes checks the node URLs of New and returns the first parsed (its
// path prefix and credentials serve every node) and every node's address.
func parseNodes(raw string) (*url.URL, []node, error) {
	bad := errors.New(`couchdb: URL must look like "http://[user:password@]host:port[/prefix]", ` +
		`or list the nodes of one cluster separated by commas`)
	var first *url.URL
	var nodes []node
	seen := map[node]bool{}
	for i, s := range splitNodeURLs(raw) {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			// url.Parse's error repeats the URL, password included: not shown.
			return nil, nil, bad
		}
		if i == 0 {
			first = u
		} else {
			if u.User != nil && (first.User == nil || u.User.String() != first.User.String()) {
				return nil, nil, errors.New("couchdb: the node URLs carry different credentials: " +
					"give them once, in the first URL (the nodes of one cluster share their users)")
			}
			if strings.TrimSuffix(u.Path, "/") != strings.TrimSuffix(first.Path, "/") {
				return nil, nil, errors.New("couchdb: the node URLs have different path prefixes: " +
					"they must name the nodes of one cluster the same way")
			}
		}
		n := node{scheme: u.Scheme, host: u.Host}
		if seen[n] {
			return nil, nil, errors.New("couchdb: a node URL is listed twice: " + u.Redacted())
		}
		seen[n] = true
		nodes = append(nodes, n)
	}
	return first, nodes, nil
}

// failover sends each request to the current node and, when that node does
// not answer (the connection is refused, reset or closed before a reply),
// to the next one, which becomes current. A request that runs out of time
// on a node is not sent again (its caller is out of time), but the next
// requests go to the next node: a hung node is left as a dead one is. Every node of a CouchDB cluster
// serves every database, so the request means the same there.
//
// A request cut off by a node's failure may have taken effect there: it is
// sent again as it was, byte for byte, which a caller retrying it would do
// too. A write of a new document then meets a conflict (the documents of
// this package are written once), which the store reports as ErrConflict.
type failover struct {
	next  http.RoundTripper
	nodes []node
	cur   atomic.Int64
	log   *slog.Logger
	moves atomic.Int64
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	// Keep the body to send it again (kivik streams some bodies through a
	// pipe, which can be read once); bodies are bounded by the batch limits.
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		req.ContentLength = int64(len(b))
	}
	start := int(f.cur.Load())
	var lastErr error
	for k := range len(f.nodes) {
		i := (start + k) % len(f.nodes)
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host = f.nodes[i].scheme, f.nodes[i].host
		r.Host = ""
		if k > 0 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, lastErr
			}
			r.Body = body
		}
		resp, err := f.next.RoundTrip(r)
		if err == nil {
			if k > 0 && f.cur.CompareAndSwap(int64(start), int64(i)) {
				f.moves.Add(1)
				f.log.Warn("couchdb: node not answering; moved to the next node",
					"from", f.nodes[start].host, "to", f.nodes[i].host, "error", redactNet(lastErr))
			}
			return resp, nil
		}
		lastErr = err
		if cerr := req.Context().Err(); cerr != nil {
			// Out of time: no other node either. A node that let a
			// request run out of time may hang (stopped, overloaded):
			// the next requests go to the next node.
			if errors.Is(cerr, context.DeadlineExceeded) && len(f.nodes) > 1 &&
				f.cur.CompareAndSwap(int64(start), int64((i+1)%len(f.nodes))) {
				f.moves.Add(1)
				f.log.Warn("couchdb: node did not answer in time; the next requests go to the next node",
					"from", f.nodes[i].host, "to", f.nodes[(i+1)%len(f.nodes)].host)
			}
			return nil, err
		}
	}
	return nil, lastErr
}

// redactNet is the text of a transport error; it holds no credentials
// (they travel in a header).
func redactNet(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// current is the node requests go to now.
func (f *failover) current() node { return f.nodes[int(f.cur.Load())%len(f.nodes)] }

// NodeURLs checks a URL argument of New as New does and returns the URL of
// each node it names, each with the first URL's credentials and path, for
// programs that talk to the nodes themselves (a readiness probe). The
// error never shows a password.
func NodeURLs(raw string) ([]string, error) {
	first, nodes, err := parseNodes(raw)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(nodes))
	for i, n := range nodes {
		u := *first
		u.Scheme, u.Host = n.scheme, n.host
		out[i] = strings.TrimSuffix(u.String(), "/")
	}
	return out, nil
}
