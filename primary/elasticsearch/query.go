package elasticsearch

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"time"
	"unicode/utf16"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// keywordLimit is dynamic mapping's ignore_above for the .keyword
// sub-field: longer values are not in it (in indices OpenWhisk created).
const keywordLimit = 256

// maxWindow is index.max_result_window: from + size may not exceed it.
const maxWindow = 10000

type obj = map[string]any

// exact matches documents whose field equals v, in indices of either
// origin: the .keyword sub-field holds the value whole (this package's
// template maps it without a length limit). Dynamic mapping leaves values
// over 256 characters out of it; for those documents only, a phrase match
// on the text field stands in (OpenWhisk's query, which is not exact).
func exact(field, v string) obj {
	kw := field + ".keyword"
	term := obj{"term": obj{kw: v}}
	if len(utf16.Encode([]rune(v))) <= keywordLimit {
		return term
	}
	return obj{"bool": obj{"minimum_should_match": 1, "should": []any{term, obj{"bool": obj{
		"must":     []any{obj{"match_phrase": obj{field: v}}},
		"must_not": []any{obj{"exists": obj{"field": kw}}},
	}}}}}
}

// filters is the query of q: OpenWhisk's (namespace, or path =
// namespace/name; start within [since or 0, upto]), made exact, with the
// namespace always filtered.
func filters(q store.Query) []any {
	f := []any{exact("namespace", q.Namespace)}
	if q.Name != "" {
		f = append(f, exact("path", q.Namespace+"/"+q.Name))
	}
	rng := obj{"gte": sinceMs(q.Since)}
	if !q.Upto.IsZero() {
		rng["lte"] = q.Upto.UnixMilli()
	}
	return append(f, obj{"range": obj{"start": rng}})
}

// sortOrder is newest first, then document id (one namespace: activation
// id) descending, as the CouchDB views order equal starts.
var sortOrder = []any{
	obj{"start": obj{"order": "desc", "unmapped_type": "long"}},
	obj{"activationId.keyword": obj{"order": "desc", "unmapped_type": "keyword"}},
}

func (s *Store) refresh(ctx context.Context, index string) error {
	if !s.cfg.refreshOnRead {
		return nil
	}
	status, body, err := s.do(ctx, http.MethodPost, "/"+escape(index)+"/_refresh", url.Values{"ignore_unavailable": {"true"}}, nil, "")
	if err != nil {
		return s.classify("refresh", index, 0, nil, err)
	}
	if status != http.StatusOK && status != http.StatusNotFound {
		return s.classify("refresh", index, status, body, nil)
	}
	return nil
}

type hit struct {
	ID     string            `json:"_id"`
	Source json.RawMessage   `json:"_source"`
	Sort   []json.RawMessage `json:"sort"`
}

type searchReply struct {
	Hits struct {
		Total int64 `json:"total"`
		Hits  []hit `json:"hits"`
	} `json:"hits"`
	Aggregations map[string]struct {
		Value *float64 `json:"value"`
	} `json:"aggregations"`
}

func (s *Store) search(ctx context.Context, op, index string, body obj) (*searchReply, error) {
	if s.server.Major >= 7 || s.server.Distribution == "opensearch" {
		if _, ok := body["track_total_hits"]; !ok {
			body["track_total_hits"] = false
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	status, reply, err := s.do(ctx, http.MethodPost, "/"+escape(index)+"/_search",
		url.Values{"ignore_unavailable": {"true"}, "rest_total_hits_as_int": {"true"}}, b, "")
	if err != nil {
		return nil, s.classify(op, index, 0, nil, err)
	}
	if status != http.StatusOK {
		return nil, s.classify(op, index, status, reply, nil)
	}
	var r searchReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, &opError{op: op, id: index, msg: "unreadable search reply: " + err.Error()}
	}
	return &r, nil
}

// List returns the matching records newest first. Pages within the
// result window are one search (from/size); deeper ones walk the index
// with search_after, so that any skip and limit are answered.
func (s *Store) List(ctx context.Context, q store.Query, _ store.UserContext) ([]*store.Activation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := store.ValidateQuery(q); err != nil {
		return nil, err
	}
	index, err := s.indexName(q.Namespace)
	if err != nil {
		return nil, err
	}
	if err := s.refresh(ctx, index); err != nil {
		return nil, err
	}
	query := obj{"bool": obj{"filter": filters(q)}}
	out := []*store.Activation{}
	if q.Limit > 0 && q.Skip <= maxWindow && q.Limit <= maxWindow-q.Skip {
		r, err := s.search(ctx, "list", index, obj{"query": query, "sort": sortOrder, "from": q.Skip, "size": q.Limit})
		if err != nil {
			return nil, err
		}
		return s.appendHits(out, r.Hits.Hits, q.IncludeDocs), nil
	}
	var after []json.RawMessage
	skip := q.Skip
	for skip > 0 {
		size := min(skip, maxWindow)
		body := obj{"query": query, "sort": sortOrder, "size": size, "_source": false}
		if after != nil {
			body["search_after"] = after
		}
		r, err := s.search(ctx, "list", index, body)
		if err != nil {
			return nil, err
		}
		if len(r.Hits.Hits) < size {
			return out, nil
		}
		after = r.Hits.Hits[len(r.Hits.Hits)-1].Sort
		skip -= size
	}
	left := q.Limit
	if left == 0 {
		left = math.MaxInt
	}
	for left > 0 {
		size := min(left, 1000)
		body := obj{"query": query, "sort": sortOrder, "size": size}
		if after != nil {
			body["search_after"] = after
		}
		r, err := s.search(ctx, "list", index, body)
		if err != nil {
			return nil, err
		}
		out = s.appendHits(out, r.Hits.Hits, q.IncludeDocs)
		if len(r.Hits.Hits) < size {
			break
		}
		after = r.Hits.Hits[len(r.Hits.Hits)-1].Sort
		left -= size
	}
	return out, nil
}

func (s *Store) appendHits(out []*store.Activation, hits []hit, docs bool) []*store.Activation {
	for _, h := range hits {
		a, err := codec.UnmarshalElasticsearchDocument(h.Source)
		if err != nil {
			s.log.Warn("elasticsearch: a document that cannot be read is left out of a list", "id", h.ID, "err", err)
			continue
		}
		if docs {
			out = append(out, a)
		} else {
			out = append(out, a.Summary())
		}
	}
	return out
}

// Count returns the number of matching records minus q.Skip, floored at 0.
func (s *Store) Count(ctx context.Context, q store.Query, _ store.UserContext) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	q.Limit = 0
	if err := store.ValidateQuery(q); err != nil {
		return 0, err
	}
	index, err := s.indexName(q.Namespace)
	if err != nil {
		return 0, err
	}
	if err := s.refresh(ctx, index); err != nil {
		return 0, err
	}
	b, _ := json.Marshal(obj{"query": obj{"bool": obj{"filter": filters(q)}}})
	status, reply, err := s.do(ctx, http.MethodPost, "/"+escape(index)+"/_count", url.Values{"ignore_unavailable": {"true"}}, b, "")
	if err != nil {
		return 0, s.classify("count", index, 0, nil, err)
	}
	if status != http.StatusOK {
		return 0, s.classify("count", index, status, reply, nil)
	}
	var r struct {
		Count int64 `json:"count"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return 0, &opError{op: "count", id: index, msg: "unreadable _count reply: " + err.Error()}
	}
	return int(max(r.Count-int64(q.Skip), 0)), nil
}

// DurationStats answers OpenWhisk's scheduler query
// (ElasticSearchDurationChecker): an avg aggregation on "duration" over
// the activations of the action. OpenWhisk matches "path.keyword" against
// the action's fully qualified name, or, through a binding, analysed
// matches on "annotations.binding" and "name"; here both are the exact
// "path" of codec.ElasticsearchPath (binding + "/" + name), within
// q.Namespace, and the window bounds "start" (the value "@timestamp" is
// written from) rather than "@timestamp".
func (s *Store) DurationStats(ctx context.Context, q store.DurationQuery, _ store.UserContext) (store.DurationStats, error) {
	var out store.DurationStats
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if err := store.ValidateDurationQuery(q); err != nil {
		return out, err
	}
	index, err := s.indexName(q.Namespace)
	if err != nil {
		return out, err
	}
	if err := s.refresh(ctx, index); err != nil {
		return out, err
	}
	path := q.Action
	if q.Binding != "" {
		path = q.Binding + "/" + q.Name
	}
	f := []any{exact("namespace", q.Namespace), exact("path", path)}
	if !q.Since.IsZero() {
		f = append(f, obj{"range": obj{"start": obj{"gte": q.Since.UnixMilli()}}})
	}
	body := obj{"size": 0, "query": obj{"bool": obj{"filter": f}},
		"aggs": obj{"averageAggregation": obj{"avg": obj{"field": "duration"}}}}
	if s.server.Major >= 7 || s.server.Distribution == "opensearch" {
		body["track_total_hits"] = true
	}
	r, err := s.search(ctx, "duration stats", index, body)
	if err != nil {
		return out, err
	}
	out.Count = r.Hits.Total
	if agg, ok := r.Aggregations["averageAggregation"]; ok {
		out.Average = agg.Value
	}
	return out, nil
}

// sinceMs is a query's lower bound on start: an unset (zero) Since is
// epoch 0, where OpenWhisk's queries start.
func sinceMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
