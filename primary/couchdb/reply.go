package couchdb

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"unicode/utf8"
)

// replyBufs recycles the buffers _bulk_docs replies are read into.
var replyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBulkReply reads a _bulk_docs reply: an array of
// {"ok":true,"id":…,"rev":…} or {"id":…,"error":…,"reason":…} objects.
// encoding/json spends more CPU on a 500-document reply than the encoding
// of the documents takes, so the usual shape is read by a scanner of its
// own; anything else (an escaped string, a member of another type) by
// encoding/json, with the same result.
func readBulkReply(r io.Reader) ([]bulkResult, error) {
	buf := replyBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 4<<20 {
			buf.Reset()
			replyBufs.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	if res, ok := scanBulkReply(buf.Bytes()); ok {
		return res, nil
	}
	var res []bulkResult
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil {
		return nil, err
	}
	return res, nil
}

var errShape = errors.New("unexpected shape")

// scanBulkReply reads b when it has the usual shape: ok false otherwise.
func scanBulkReply(b []byte) (res []bulkResult, ok bool) {
	s := replyScanner{b: b}
	if !s.byte('[') {
		return nil, false
	}
	res = make([]bulkResult, 0, bytes.Count(b, []byte(`"id"`)))
	if s.byte(']') {
		return res, s.end()
	}
	for {
		r, err := s.object()
		if err != nil {
			return nil, false
		}
		res = append(res, r)
		if s.byte(',') {
			continue
		}
		if s.byte(']') {
			return res, s.end()
		}
		return nil, false
	}
}

type replyScanner struct {
	b   []byte
	pos int
}

func (s *replyScanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// byte consumes c (after white space) when it comes next.
func (s *replyScanner) byte(c byte) bool {
	s.ws()
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *replyScanner) end() bool {
	s.ws()
	return s.pos == len(s.b)
}

// str reads a string without escapes, control characters or bad UTF-8.
func (s *replyScanner) str() (string, error) {
	b, err := s.raw()
	return string(b), err
}

// raw reads a string as str does, without copying it.
func (s *replyScanner) raw() ([]byte, error) {
	if !s.byte('"') {
		return nil, errShape
	}
	start, ascii := s.pos, true
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(s.b[start:s.pos]) {
				return nil, errShape // encoding/json replaces bad bytes
			}
			v := s.b[start:s.pos]
			s.pos++
			return v, nil
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '\\' || c < 0x20:
			return nil, errShape
		}
		s.pos++
	}
	return nil, errShape
}

func (s *replyScanner) boolean() (bool, error) {
	s.ws()
	switch {
	case bytes.HasPrefix(s.b[s.pos:], []byte("true")):
		s.pos += 4
		return true, nil
	case bytes.HasPrefix(s.b[s.pos:], []byte("false")):
		s.pos += 5
		return false, nil
	}
	return false, errShape
}

// object reads one result; a member it does not know, or of another type
// than expected, makes the whole reply go to encoding/json.
func (s *replyScanner) object() (bulkResult, error) {
	var r bulkResult
	if !s.byte('{') {
		return r, errShape
	}
	if s.byte('}') {
		return r, nil
	}
	for {
		key, err := s.raw()
		if err != nil || !s.byte(':') {
			return r, errShape
		}
		switch string(key) {
		case "id":
			r.ID, err = s.str()
		case "rev":
			r.Rev, err = s.str()
		case "error":
			r.Error, err = s.str()
		case "reason":
			r.Reason, err = s.str()
		case "ok":
			_, err = s.boolean()
		case "accepted":
			r.Accepted, err = s.boolean()
		default:
			err = errShape
		}
		if err != nil {
			return r, err
		}
		if s.byte(',') {
			continue
		}
		if s.byte('}') {
			return r, nil
		}
		return r, errShape
	}
}
