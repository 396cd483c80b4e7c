package controller

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-whisk/activationstore/codec"
	"github.com/go-whisk/activationstore/store"
)

// BadRequestError is a request OpenWhisk's controller answers with 400 Bad
// Request. Message is OpenWhisk's text (ErrorResponse.scala's Messages).
type BadRequestError struct{ Message string }

func (e *BadRequestError) Error() string { return "controller: bad request: " + e.Message }

func limitError(v string) error {
	return &BadRequestError{"The value '" + v + "' is not in the range of 0 to " + strconv.Itoa(MaxListLimit) + " for activations."}
}

func skipError(v string) error {
	return &BadRequestError{"The value '" + v + "' is not greater than or equal to 0 for activations."}
}

// ListRequest is a GET /namespaces/{namespace}/activations request, read.
type ListRequest struct {
	// Query is what to list or count. Its Limit is resolved (never 0).
	Query store.Query
	// Count asks for the number of records instead of the records.
	Count bool
}

// ParseListRequest reads the query parameters of GET
// /namespaces/{namespace}/activations as OpenWhisk's RestAPIs.scala and
// Activations.scala do; a refused parameter is a *BadRequestError with
// OpenWhisk's message.
//
//   - limit: absent, DefaultListLimit; 0, MaxListLimit; 1 to MaxListLimit;
//     anything else is refused.
//   - skip: absent, 0; a negative skip is refused.
//   - count, docs: booleans (true/false, yes/no, on/off, 1/0); docs is
//     refused with count.
//   - name: "action" or "package/action", empty segments dropped as
//     EntityPath does ("/x" is "x"); blank is no name.
//   - since, upto: epoch milliseconds, both inclusive.
func ParseListRequest(namespace string, params url.Values) (ListRequest, error) {
	req := ListRequest{Query: store.Query{Namespace: namespace, Limit: DefaultListLimit}}
	if v, ok := param(params, "limit"); ok {
		n, err := strconv.ParseInt(v, 10, 32) // Scala's toInt
		switch {
		case err != nil:
			return req, notInteger(v)
		case n == 0:
			req.Query.Limit = MaxListLimit
		case n > 0 && n <= MaxListLimit:
			req.Query.Limit = int(n)
		default:
			return req, limitError(strconv.FormatInt(n, 10))
		}
	}
	if v, ok := param(params, "skip"); ok {
		n, err := strconv.ParseInt(v, 10, 32)
		switch {
		case err != nil:
			return req, notInteger(v)
		case n < 0:
			return req, skipError(strconv.FormatInt(n, 10))
		}
		req.Query.Skip = int(n)
	}
	var err error
	if req.Count, err = boolParam(params, "count"); err != nil {
		return req, err
	}
	if req.Query.IncludeDocs, err = boolParam(params, "docs"); err != nil {
		return req, err
	}
	if req.Count && req.Query.IncludeDocs {
		return req, &BadRequestError{"The parameter 'docs' is not permitted with 'count'."}
	}
	if v, ok := param(params, "name"); ok && strings.TrimSpace(v) != "" {
		segs := strings.FieldsFunc(v, func(r rune) bool { return r == '/' })
		if len(segs) == 0 || len(segs) > 2 {
			return req, badName(v)
		}
		for _, s := range segs {
			if store.ValidateEntityName(s) != nil {
				return req, badName(v)
			}
		}
		req.Query.Name = strings.Join(segs, "/")
	}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &req.Query.Since}, {"upto", &req.Query.Upto}} {
		if v, ok := param(params, b.name); ok {
			ms, err := strconv.ParseInt(v, 10, 64) // Scala's toLong
			if err != nil {
				return req, &BadRequestError{"Parameter is not a valid value for epoch seconds: " + v}
			}
			*b.t = time.UnixMilli(ms).UTC()
		}
	}
	return req, nil
}

func param(params url.Values, name string) (string, bool) {
	vs, ok := params[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

func notInteger(v string) error {
	return &BadRequestError{"The value '" + v + "' is not an integer for activations."}
}

func badName(v string) error {
	return &BadRequestError{"Parameter may be a 'simple' name or 'package-name/simple' name: " + v}
}

// boolParam reads a boolean as Akka HTTP's unmarshaller does.
func boolParam(params url.Values, name string) (bool, error) {
	v, ok := param(params, name)
	if !ok {
		return false, nil
	}
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, &BadRequestError{"The query parameter '" + name + "' was malformed:\n'" + v + "' is not a valid Boolean value"}
}

// Handler serves OpenWhisk's activation reads over HTTP:
//
//	GET /api/v1/namespaces/{namespace}/activations       list (or count)
//	GET /api/v1/namespaces/{namespace}/activations/{id}  one activation
//
// Lists are JSON arrays of the views' summaries, or of whole records with
// docs=true; a count is {"activations": n}; errors are {"error": message}
// with 400 for a refused parameter or name, 404 for a missing activation.
// Authentication, entitlement and the default namespace "_" are outside
// this sketch: every request reads with the zero UserContext.
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/namespaces/{namespace}/activations", func(w http.ResponseWriter, r *http.Request) {
		req, err := ParseListRequest(r.PathValue("namespace"), r.URL.Query())
		if err != nil {
			c.writeError(r.Context(), w, err)
			return
		}
		if req.Count {
			n, err := c.CountActivations(r.Context(), req.Query, store.UserContext{})
			if err != nil {
				c.writeError(r.Context(), w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]int{"activations": n})
			return
		}
		as, err := c.Activations(r.Context(), req.Query, store.UserContext{})
		if err != nil {
			c.writeError(r.Context(), w, err)
			return
		}
		body := make([]json.RawMessage, 0, len(as))
		for _, a := range as {
			var b []byte
			if req.Query.IncludeDocs {
				b, err = codec.MarshalExtended(a)
			} else {
				b, err = codec.MarshalSummary(a)
			}
			if err != nil {
				c.writeError(r.Context(), w, err)
				return
			}
			body = append(body, b)
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.HandleFunc("GET /api/v1/namespaces/{namespace}/activations/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, err := c.Activation(r.Context(), r.PathValue("namespace"), r.PathValue("id"), store.UserContext{})
		if err != nil {
			c.writeError(r.Context(), w, err)
			return
		}
		b, err := codec.MarshalExtended(a)
		if err != nil {
			c.writeError(r.Context(), w, err)
			return
		}
		writeJSON(w, http.StatusOK, json.RawMessage(b))
	})
	return mux
}

func (c *Controller) writeError(ctx context.Context, w http.ResponseWriter, err error) {
	var bad *BadRequestError
	var invalid *store.InvalidError
	switch {
	case errors.As(err, &bad):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": bad.Message})
	case errors.As(err, &invalid):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": invalid.Error()})
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "The requested resource does not exist."})
	default:
		c.logger.ErrorContext(ctx, "activation read failed", "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Internal server error."})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
