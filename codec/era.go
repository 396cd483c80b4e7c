package codec

import (
	"fmt"
	"regexp"
	"strings"
)

// Era is the OpenWhisk version whose controllers read the acks a writer
// sends. It picks the member that carries the invoker's instance id and the
// shape of that id, and the shape of the transid: a PR-era controller reads
// only [id, start(, true)?] and takes a transid with a parent as
// "sid_unknown", so at EraPR the parent is left out (result messages too;
// otherwise they are the same in every era).
//
// Which OpenWhisk reads which (apache/openwhisk, Message.scala and
// InstanceId.scala):
//
//	era        OpenWhisk                                   member      instance id
//	EraMaster  1.0.0 (Oct 2020): #4898, June 2020 on        "instance"  requires instanceType "invoker"; ignores tags
//	EraMaster  2.0.0 (Mar 2024) and master: #5061 on        "instance"  also requires tags and dedicatedNamespaces
//	EraPR      unreleased master of Oct 2018 (#4011) to      "invoker"   v1: instance, userMemory, uniqueName?, displayedName?
//	           June 2020, the base of PR #4632 included
//
// EraMaster writes a complete current InvokerInstanceId (tags and
// dedicatedNamespaces as [] when there are none), which both rows above
// read. A controller of one era cannot read acks of the other: master
// rejects a PR-era completion and reads a PR-era combined message as a
// bare result, so the slot is never freed; a PR-era controller ignores
// "instance". Decode reads both.
type Era uint8

const (
	// EraMaster: OpenWhisk 1.0.0, 2.0.0 and master. The default.
	EraMaster Era = iota
	// EraPR: OpenWhisk master between October 2018 and June 2020, which
	// PR #4632 (the activation persister) targets.
	EraPR
)

// String returns "master" or "pr", the names ParseEra reads.
func (e Era) String() string {
	switch e {
	case EraMaster:
		return "master"
	case EraPR:
		return "pr"
	}
	return fmt.Sprintf("Era(%d)", uint8(e))
}

// InstanceKey returns the member the era's acks carry the instance id in:
// InstanceKey or InstanceKeyInvoker.
func (e Era) InstanceKey() string {
	if e == EraPR {
		return InstanceKeyInvoker
	}
	return InstanceKey
}

// ParseEra reads an era name ("master" or "pr", case-insensitively), for
// flags and configuration. The error matches store.ErrInvalid.
func ParseEra(s string) (Era, error) {
	for _, e := range []Era{EraMaster, EraPR} {
		if strings.EqualFold(s, e.String()) {
			return e, nil
		}
	}
	return 0, invalidInput("era", fmt.Sprintf("%q is not an OpenWhisk ack era: want master or pr", s))
}

// byteSize is OpenWhisk's ByteSize.fromString pattern (Size.scala), matched
// against the whole string; at most 18 digits, so that toLong cannot
// overflow.
var byteSize = regexp.MustCompile(`^(?i)\s?[0-9]{1,18}\s?(?:GB|MB|KB|B|G|M|K)\s?$`)
