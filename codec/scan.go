package codec

import (
	"encoding/binary"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/go-whisk/activationstore/store"
)

// maxDepth bounds the nesting of arrays and objects, so that hostile input
// cannot exhaust the stack.
const maxDepth = 1000

// decoder is a single-pass JSON reader over one record. It never builds a
// generic tree: callers pull typed values and copy raw values (results,
// annotation values) out of the input exactly once.
type decoder struct {
	data  []byte
	pos   int
	depth int
	path  []pathElem // where the decoder is, for error messages
	// pathBuf backs path at the depths records have (ack → activation →
	// response → result), so that tracking it allocates nothing
	pathBuf [6]pathElem
	// set while skipping, so raw values are copied verbatim unless they must
	// be compacted (whitespace) or repaired (invalid UTF-8)
	sawSpace, sawBadUTF8 bool
	// sawFFFF is set by any string holding a raw U+FFFF, which a writer
	// must escape (spray-json reads it as the end of input)
	sawFFFF bool
	// writing: the decoder checks a raw value about to be written, and
	// refuses what OpenWhisk's parser cannot read (store.NumberProblem,
	// store.MaxRawNesting)
	writing bool
}

type pathElem struct {
	key []byte // member name; nil for an array element
	idx int
}

func (d *decoder) push(key []byte)    { d.path = append(d.path, pathElem{key: key, idx: -1}) }
func (d *decoder) pushIndex(i int)    { d.path = append(d.path, pathElem{idx: i}) }
func (d *decoder) pop()               { d.path = d.path[:len(d.path)-1] }
func (d *decoder) setIndex(i int)     { d.path[len(d.path)-1].idx = i }
func (d *decoder) pathString() string { return formatPath(d.path) }

func formatPath(p []pathElem) string {
	var b strings.Builder
	for _, e := range p {
		if e.key == nil {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.idx))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.Write(e.key)
	}
	return b.String()
}

// errorf reports a problem with the value the decoder is on.
func (d *decoder) errAt(reason string) *Error {
	return &Error{Field: d.pathString(), Reason: reason, Offset: int64(d.pos)}
}

func (d *decoder) syntaxErr(reason string) *Error {
	return d.errAt(reason + " at byte " + strconv.Itoa(d.pos))
}

func (d *decoder) typeErr(want string) *Error {
	return d.errAt("want " + want + ", got " + kindName(d.peek()))
}

func kindName(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "number"
	case 0:
		return "end of input"
	}
	return "invalid character " + strconv.QuoteRune(rune(c))
}

func (d *decoder) ws() {
	start := d.pos
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
			continue
		}
		break
	}
	if d.pos != start {
		d.sawSpace = true
	}
}

// peek returns the next byte, or 0 at the end of input.
func (d *decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.syntaxErr("nesting deeper than " + strconv.Itoa(maxDepth))
	}
	if d.writing && d.depth > store.MaxRawNesting {
		e := d.errAt("nests deeper than " + strconv.Itoa(store.MaxRawNesting) + " levels; OpenWhisk's JSON parser reads at most 1000 in a whole record")
		e.writeProblem = true
		return e
	}
	return nil
}

// objectStart consumes '{'. The caller loops with nextMember.
func (d *decoder) objectStart() error {
	if d.peek() != '{' {
		return d.typeErr("a JSON object")
	}
	if err := d.enter(); err != nil {
		return err
	}
	d.pos++
	return nil
}

// nextMember reads the next member name of an object and the colon after it.
// It returns ok=false after consuming the closing '}'. The key aliases the
// input unless it had escapes.
func (d *decoder) nextMember(first bool) (key []byte, ok bool, err error) {
	d.ws()
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil, false, nil
	}
	if !first {
		if d.peek() != ',' {
			return nil, false, d.syntaxErr("want ',' or '}' in object, got " + kindName(d.peek()))
		}
		d.pos++
		d.ws()
	}
	if d.peek() != '"' {
		return nil, false, d.syntaxErr("want a member name, got " + kindName(d.peek()))
	}
	key, err = d.readKey()
	if err != nil {
		return nil, false, err
	}
	d.ws()
	if d.peek() != ':' {
		return nil, false, d.syntaxErr("want ':' after member name, got " + kindName(d.peek()))
	}
	d.pos++
	d.ws()
	return key, true, nil
}

// arrayStart consumes '['.
func (d *decoder) arrayStart() error {
	if d.peek() != '[' {
		return d.typeErr("a JSON array")
	}
	if err := d.enter(); err != nil {
		return err
	}
	d.pos++
	return nil
}

// nextElement positions the decoder on the next array element. It returns
// false after consuming the closing ']'.
func (d *decoder) nextElement(first bool) (bool, error) {
	d.ws()
	if d.peek() == ']' {
		d.pos++
		d.depth--
		return false, nil
	}
	if !first {
		if d.peek() != ',' {
			return false, d.syntaxErr("want ',' or ']' in array, got " + kindName(d.peek()))
		}
		d.pos++
		d.ws()
	}
	return true, nil
}

// end checks that nothing but whitespace follows the top-level value.
func (d *decoder) end() error {
	d.ws()
	if d.pos != len(d.data) {
		d.path = d.path[:0]
		return d.syntaxErr("unexpected " + kindName(d.peek()) + " after the top-level value")
	}
	return nil
}

func (d *decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.syntaxErr("invalid literal, want " + lit)
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) readBool() (bool, error) {
	switch d.peek() {
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	}
	return false, d.typeErr("a boolean")
}

// readNumber consumes a JSON number and returns its literal.
func (d *decoder) readNumber() ([]byte, error) {
	start := d.pos
	data := d.data
	i := d.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return nil, d.syntaxErr("invalid number")
	}
	if i < len(data) && data[i] == '.' {
		i++
		j := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == j {
			d.pos = i
			return nil, d.syntaxErr("invalid number: no digits after '.'")
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == j {
			d.pos = i
			return nil, d.syntaxErr("invalid number: no digits in exponent")
		}
	}
	d.pos = i
	return data[start:i], nil
}

// wrapInt converts a JSON number literal to an integer of the given bits
// (32: a Scala Int; 64: a Long) the way OpenWhisk reads it, through
// java.math.BigDecimal's intValue or longValue: a fraction truncates toward
// zero and only the low-order bits of the integer are kept, so 2147484011
// reads as an Int -2147483285. Every literal has a value; none is refused.
func wrapInt(lit []byte, bits uint) int64 {
	plain := true
	for _, c := range lit {
		if c == '.' || c == 'e' || c == 'E' {
			plain = false
			break
		}
	}
	if plain {
		if v, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
			return truncBits(v, bits)
		}
	}
	s := string(lit)
	mant, exp := s, int64(0)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.ParseInt(s[i+1:], 10, 64)
		if err != nil {
			// |exponent| beyond int64: a fraction (0), or a multiple of
			// 10^64, whose low 64 bits are 0
			return 0
		}
		exp = e
	}
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	scale := exp - int64(len(frac)) // value = digits × 10^scale
	if digits == "" || int64(len(digits))+scale <= 0 || scale >= int64(bits) {
		// zero, a fraction, or a multiple of 10^bits = 2^bits × 5^bits
		return 0
	}
	n, _ := new(big.Int).SetString(digits, 10)
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(abs(scale)), nil)
	if scale >= 0 {
		n.Mul(n, p)
	} else {
		n.Quo(n, p)
	}
	if neg {
		n.Neg(n)
	}
	// two's complement low-order bits, as BigInteger.longValue keeps them
	low := new(big.Int).And(n, new(big.Int).SetUint64(math.MaxUint64))
	return truncBits(int64(low.Uint64()), bits)
}

func truncBits(v int64, bits uint) int64 {
	if bits == 32 {
		return int64(int32(v))
	}
	return v
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// SWAR constants: scan eight string bytes at a time for the bytes that end
// the fast path: '"', '\\', control characters and non-ASCII.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainLen returns how many leading bytes of b are printable ASCII other
// than '"' and '\\'.
func plainLen(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		special := (x - lsb*0x20) | // bytes < 0x20 (borrow sets the high bit)
			((x ^ (lsb * '"')) - lsb) | // bytes == '"'
			((x ^ (lsb * '\\')) - lsb) | // bytes == '\\'
			x // bytes >= 0x80
		if special&msb != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return i
}

// scanString consumes a string starting at '"' and reports its content span
// and whether it needs decoding (escapes) or repair (invalid UTF-8).
func (d *decoder) scanString() (start, end int, escaped, badUTF8 bool, err error) {
	d.pos++ // opening quote
	start = d.pos
	data := d.data
	i := d.pos
	for {
		i += plainLen(data[i:])
		if i >= len(data) {
			d.pos = i
			return 0, 0, false, false, d.syntaxErr("unterminated string")
		}
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return start, i, escaped, badUTF8, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(data) {
				d.pos = i
				return 0, 0, false, false, d.syntaxErr("unterminated string")
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					d.pos = i
					return 0, 0, false, false, d.syntaxErr(`invalid \u escape in string`)
				}
				i += 6
			default:
				d.pos = i
				return 0, 0, false, false, d.syntaxErr("invalid escape " + strconv.Quote(string(data[i:i+2])) + " in string")
			}
		case c < 0x20:
			d.pos = i
			return 0, 0, false, false, d.syntaxErr("control character " + strconv.QuoteRune(rune(c)) + " in string")
		default: // non-ASCII
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				badUTF8 = true
			} else if r == 0xFFFF {
				d.sawFFFF = true
			}
			i += size
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// readString reads a string value. Invalid UTF-8 becomes U+FFFD, as do
// unpaired surrogate escapes (what encoding/json and Java do).
func (d *decoder) readString() (string, error) {
	if d.peek() != '"' {
		return "", d.typeErr("a string")
	}
	s, e, esc, bad, err := d.scanString()
	if err != nil {
		return "", err
	}
	if !esc && !bad {
		return string(d.data[s:e]), nil
	}
	b := unquote(make([]byte, 0, e-s+8), d.data[s:e])
	if len(b) == 0 {
		return "", nil
	}
	// b is fresh and never written again: hand it over without a second copy.
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// readKey reads a member name without allocating unless it has escapes.
func (d *decoder) readKey() ([]byte, error) {
	s, e, esc, bad, err := d.scanString()
	if err != nil {
		return nil, err
	}
	if !esc && !bad {
		return d.data[s:e], nil
	}
	return unquote(nil, d.data[s:e]), nil
}

// unquote decodes the content of a valid JSON string (between the quotes).
func unquote(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		n := plainLen(b[i:])
		dst = append(dst, b[i:i+n]...)
		i += n
		if i >= len(b) {
			break
		}
		c := b[i]
		if c != '\\' {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			i += size
			continue
		}
		switch b[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(b[i+2:]))
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, rune(hex4(b[i+2:]))); r2 != utf8.RuneError {
						dst = utf8.AppendRune(dst, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, b[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case c <= '9':
			v |= uint16(c - '0')
		case c >= 'a':
			v |= uint16(c - 'a' + 10)
		default:
			v |= uint16(c - 'A' + 10)
		}
	}
	return v
}

// skip consumes any JSON value, checking its syntax.
func (d *decoder) skip() error {
	switch c := d.peek(); c {
	case '"':
		_, _, _, bad, err := d.scanString()
		if bad {
			d.sawBadUTF8 = true
		}
		return err
	case '{':
		if err := d.objectStart(); err != nil {
			return err
		}
		for first := true; ; first = false {
			key, ok, err := d.nextMember(first)
			if err != nil || !ok {
				return err
			}
			d.push(key)
			if err := d.skip(); err != nil {
				return err
			}
			d.pop()
		}
	case '[':
		if err := d.arrayStart(); err != nil {
			return err
		}
		d.pushIndex(0)
		for i := 0; ; i++ {
			ok, err := d.nextElement(i == 0)
			if err != nil {
				return err
			}
			if !ok {
				d.pop()
				return nil
			}
			d.setIndex(i)
			if err := d.skip(); err != nil {
				return err
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			lit, err := d.readNumber()
			if err == nil && d.writing {
				if p := store.NumberProblem(lit); p != "" {
					e := d.errAt(p)
					e.writeProblem = true
					return e
				}
			}
			return err
		}
		return d.syntaxErr("want a JSON value, got " + kindName(c))
	}
}

// raw consumes any JSON value and returns a compact copy of it. Whitespace
// between tokens is dropped, invalid UTF-8 inside strings becomes U+FFFD
// and a raw U+FFFF the escape \uffff (what a writer writes);
// everything else (number literals, escapes, member order) is kept byte for
// byte.
func (d *decoder) raw() ([]byte, error) {
	start := d.pos
	d.sawSpace, d.sawBadUTF8, d.sawFFFF = false, false, false
	if err := d.skip(); err != nil {
		return nil, err
	}
	v := d.data[start:d.pos]
	if !d.sawSpace && !d.sawBadUTF8 && !d.sawFFFF {
		return append(make([]byte, 0, len(v)), v...), nil
	}
	return compact(make([]byte, 0, len(v)), v), nil
}

// compact appends the valid JSON value v without insignificant whitespace,
// with invalid UTF-8 in strings replaced by U+FFFD and U+FFFF escaped.
func compact(dst, v []byte) []byte {
	for i := 0; i < len(v); {
		c := v[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
		case '"':
			j := i + 1
			for {
				j += plainLen(v[j:])
				c := v[j]
				if c == '"' {
					break
				}
				if c == '\\' {
					if v[j+1] == 'u' {
						j += 6
					} else {
						j += 2
					}
					continue
				}
				if c >= 0x80 {
					r, size := utf8.DecodeRune(v[j:])
					if r == utf8.RuneError && size == 1 {
						dst = append(dst, v[i:j]...)
						dst = append(dst, "\uFFFD"...)
						i = j + 1
					} else if r == 0xFFFF {
						dst = append(dst, v[i:j]...)
						dst = append(dst, `\uffff`...)
						i = j + size
					}
					j += size
					continue
				}
				j++ // unreachable for valid input: control characters were rejected
			}
			dst = append(dst, v[i:j+1]...)
			i = j + 1
		default:
			j := i + 1
			for j < len(v) {
				switch v[j] {
				case ' ', '\t', '\n', '\r', '"':
				default:
					j++
					continue
				}
				break
			}
			dst = append(dst, v[i:j]...)
			i = j
		}
	}
	return dst
}
