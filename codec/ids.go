package codec

import (
	"encoding/json"
	"strconv"
	"time"
)

// TransactionID is OpenWhisk's TransactionId: JSON [id, startMillis(, true)?(, [parent…])?].
type TransactionID struct {
	ID           string
	Start        time.Time // millisecond precision; the zero time.Time is written as -62135596800000
	ExtraLogging bool      // X-OW-EXTRA-LOGGING: written as a third element only when true
	Parent       *TransactionID
}

// UnknownTransactionID is the id OpenWhisk substitutes for a transid it
// cannot read.
const UnknownTransactionID = "sid_unknown"

// MarshalJSON writes the array form.
func (t TransactionID) MarshalJSON() ([]byte, error) {
	return appendTID(nil, &t, 0, EraMaster)
}

// unknownStart is the Start of the unknown transaction: epoch 0, so that
// decoding is deterministic (OpenWhisk uses the current time).
var unknownStart = time.UnixMilli(0).UTC()

// UnmarshalJSON reads a transaction id. Like OpenWhisk's reader it fails
// only on invalid JSON: any other shape gives the unknown transaction
// ("sid_unknown"), whose Start is epoch 0 (OpenWhisk uses the current
// time).
func (t *TransactionID) UnmarshalJSON(b []byte) error {
	d := decoder{data: b}
	d.ws()
	v, err := d.transactionID()
	if err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	*t = v
	return nil
}

func (d *decoder) transactionID() (TransactionID, error) {
	t, err := d.tidValue()
	if err != nil {
		return TransactionID{}, err
	}
	if t == nil {
		return TransactionID{ID: UnknownTransactionID, Start: unknownStart}, nil
	}
	return *t, nil
}

// tidValue reads any value; it returns nil when the value is not a
// transaction id array. It follows TransactionId.serdes.read at master:
// [id, start], [id, start, bool], [id, start, bool, parent], [id, start, parent];
// a parent that cannot be read is dropped.
func (d *decoder) tidValue() (*TransactionID, error) {
	if d.peek() != '[' {
		return nil, d.skip()
	}
	if err := d.arrayStart(); err != nil {
		return nil, err
	}
	t := &TransactionID{}
	good := true
	hasBool := false
	n := 0
	d.pushIndex(0)
	for i := 0; ; i++ {
		more, err := d.nextElement(i == 0)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		n++
		d.setIndex(i)
		c := d.peek()
		switch {
		case !good:
			err = d.skip()
		case i == 0 && c == '"':
			t.ID, err = d.readString()
		case i == 1 && (c == '-' || c >= '0' && c <= '9'):
			var lit []byte
			if lit, err = d.readNumber(); err == nil {
				t.Start = msToTime(wrapInt(lit, 64)) // start.longValue

			}
		case i == 2 && (c == 't' || c == 'f'):
			hasBool = true
			t.ExtraLogging, err = d.readBool()
		case i == 2 || i == 3 && hasBool:
			t.Parent, err = d.tidValue()
		default:
			good = false
			err = d.skip()
		}
		if err != nil {
			return nil, err
		}
		if i >= 4 {
			good = false
		}
	}
	d.pop()
	if !good || n < 2 {
		return nil, nil
	}
	return t, nil
}

// InstanceID is the InstanceId that completion and combined messages carry:
// the invoker that freed a slot. Every historical shape is accepted:
//   - v1 (PR era, under the member "invoker"): {"instance":0,"userMemory":"1024 MB","uniqueName"?,"displayedName"?}
//   - v2 (2020, member "instance"): v1 + "instanceType":"invoker"
//   - v3 (2021 to master): v2 + "busyMemory"?, "tags", "dedicatedNamespaces"
//   - controllers and schedulers: {"asString":"0","instanceType":"controller"}
//   - anything else, kept as is.
type InstanceID struct {
	// Type is the instanceType member: "invoker", "controller", …; "" when
	// absent (v1 invoker ids). Writers may leave it empty for an invoker:
	// the id is written with the instanceType its era needs.
	Type          string
	Instance      int    // the invoker's number
	AsString      string // a controller's or scheduler's id
	UniqueName    string
	DisplayedName string
	UserMemory    string // ByteSize as written, e.g. "1024 MB"; required
	BusyMemory    string // optional ByteSize
	// Tags select the actions the invoker runs; nil is written as [].
	Tags []string
	// DedicatedNamespaces are the namespaces the invoker serves
	// exclusively; nil is written as [].
	DedicatedNamespaces []string
	// Raw is the JSON as read (compacted). When set, it is written back
	// unchanged, so that re-encoding a decoded message keeps members this
	// package does not model; clear it to write the fields instead.
	Raw json.RawMessage
}

// IsInvoker reports whether the instance is an invoker's.
func (i *InstanceID) IsInvoker() bool {
	return i.Type == "invoker" || i.Type == "" && i.AsString == ""
}

// instanceID reads any instance value. Member types are checked leniently:
// a member of an unexpected type is left out of the typed fields but kept
// in Raw, so no record carrying an activation is dropped for its instance.
func (d *decoder) instanceID() (InstanceID, error) {
	var in InstanceID
	start := d.pos
	if d.peek() != '{' {
		if err := d.skip(); err != nil {
			return in, err
		}
		in.Raw = compact(nil, d.data[start:d.pos])
		return in, nil
	}
	if err := d.objectStart(); err != nil {
		return in, err
	}
	wrapped := false // the instance number is not written as OpenWhisk writes its Int
	var litStart, litEnd int
	for first := true; ; first = false {
		key, ok, err := d.nextMember(first)
		if err != nil {
			return in, err
		}
		if !ok {
			break
		}
		d.push(key)
		c := d.peek()
		switch k := string(key); {
		case k == "instance" && (c == '-' || c >= '0' && c <= '9'):
			var lit []byte
			if lit, err = d.readNumber(); err == nil {
				in.Instance = int(wrapInt(lit, 32)) // a Scala Int: wraps
				wrapped = string(lit) != strconv.Itoa(in.Instance)
				litEnd = d.pos
				litStart = litEnd - len(lit)
			}
		case c == '"' && (k == "instanceType" || k == "asString" || k == "uniqueName" ||
			k == "displayedName" || k == "userMemory" || k == "busyMemory"):
			var s string
			if s, err = d.readString(); err == nil {
				switch k {
				case "instanceType":
					in.Type = s
				case "asString":
					in.AsString = s
				case "uniqueName":
					in.UniqueName = s
				case "displayedName":
					in.DisplayedName = s
				case "userMemory":
					in.UserMemory = s
				default:
					in.BusyMemory = s
				}
			}
		case c == '[' && (k == "tags" || k == "dedicatedNamespaces"):
			var list []string
			if list, err = d.stringsLenient(); err == nil {
				if k == "tags" {
					in.Tags = list
				} else {
					in.DedicatedNamespaces = list
				}
			}
		default:
			err = d.skip()
		}
		if err != nil {
			return in, err
		}
		d.pop()
	}
	if wrapped && in.IsInvoker() {
		// OpenWhisk reads the number as another Int and writes that one
		// back: so do we, instead of the literal read
		raw := compact(make([]byte, 0, d.pos-start), d.data[start:litStart])
		raw = strconv.AppendInt(raw, int64(in.Instance), 10)
		in.Raw = compact(raw, d.data[litEnd:d.pos])
		return in, nil
	}
	in.Raw = compact(make([]byte, 0, d.pos-start), d.data[start:d.pos])
	return in, nil
}

// stringsLenient reads an array, keeping its string elements.
func (d *decoder) stringsLenient() ([]string, error) {
	if err := d.arrayStart(); err != nil {
		return nil, err
	}
	list := []string{}
	for i := 0; ; i++ {
		more, err := d.nextElement(i == 0)
		if err != nil || !more {
			return list, err
		}
		if d.peek() != '"' {
			if err := d.skip(); err != nil {
				return nil, err
			}
			continue
		}
		s, err := d.readString()
		if err != nil {
			return nil, err
		}
		list = append(list, s)
	}
}

// MarshalJSON writes Raw when set, else the fields as OpenWhisk master
// reads them (see Era): an invoker's id complete, with instanceType
// "invoker" and tags and dedicatedNamespaces as arrays.
func (i InstanceID) MarshalJSON() ([]byte, error) {
	return appendInstance(nil, &i, EraMaster)
}
