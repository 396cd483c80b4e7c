package persister

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/segmentio/kafka-go"
)

// ErrUnsupportedBroker is matched by the error Persister.Run returns when a
// broker does not accept a request version the persister's Kafka client
// must send; the concrete error is a *BrokerVersionError. Run fails fast
// on it: retrying cannot help, and the broker would only close the
// connection on every attempt to join the group.
var ErrUnsupportedBroker = errors.New("persister: the Kafka broker does not accept a request version the persister needs")

// persisterAPI is a request kafka-go sends at fixed versions on the
// persister's path: its consumer group, its partition readers and topic
// discovery use the old Conn API, which negotiates at most between two or
// three versions and often not at all (kafka-go v0.4.51).
type persisterAPI struct {
	key      int16
	name     string
	versions []int16 // what kafka-go can send, any one of them will do
}

// persisterAPIs are the requests of kafka-go v0.4.51 (go.mod); update
// them with kafka-go.
var persisterAPIs = []persisterAPI{
	{1, "Fetch", []int16{2, 5, 10}},
	{2, "ListOffsets", []int16{1}},
	{3, "Metadata", []int16{1}},
	{8, "OffsetCommit", []int16{2}},
	{9, "OffsetFetch", []int16{1}},
	{10, "FindCoordinator", []int16{0}},
	{11, "JoinGroup", []int16{1, 2}},
	{12, "Heartbeat", []int16{0}},
	{13, "LeaveGroup", []int16{0}},
	{14, "SyncGroup", []int16{0}},
}

// BrokerVersionError reports a request the broker does not accept in any
// version the persister's Kafka client can send.
type BrokerVersionError struct {
	Broker string  // address of the broker asked
	API    string  // request name, e.g. "JoinGroup"
	Key    int16   // Kafka API key
	Sends  []int16 // versions the client can send
	// Min and Max are the versions the broker accepts; Offered is false
	// when it does not offer the API at all.
	Min, Max int16
	Offered  bool
}

func (e *BrokerVersionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "persister: the persister cannot consume from the Kafka broker at %s: ", e.Broker)
	if e.Offered {
		fmt.Fprintf(&b, "it accepts %s (API key %d) versions %d to %d", e.API, e.Key, e.Min, e.Max)
	} else {
		fmt.Fprintf(&b, "it does not offer %s (API key %d)", e.API, e.Key)
	}
	fmt.Fprintf(&b, ", and kafka-go, the persister's client, sends only version %s", joinVersions(e.Sends))
	if e.API == "JoinGroup" && e.Offered && e.Min == 2 && slices.Max(e.Sends) < 2 {
		// The known case: Apache Kafka 4.0.0 dropped JoinGroup v0 and
		// v1 (KIP-896), and 4.0.1 took them back (KAFKA-19444).
		b.WriteString("; Apache Kafka 4.0.0 rejects JoinGroup v0-v1 (KIP-896; KAFKA-19444 restored them in 4.0.1): use Apache Kafka 4.0.1 or newer")
	} else {
		b.WriteString("; run a broker version this library supports (see the README, \"Supported Kafka versions\")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnsupportedBroker) true.
func (e *BrokerVersionError) Is(target error) bool { return target == ErrUnsupportedBroker }

func joinVersions(vs []int16) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, " or ")
}

// checkAPIVersions returns a *BrokerVersionError for the first request the
// broker behind conn accepts in none of the versions kafka-go can send.
func checkAPIVersions(conn *kafka.Conn, addr string, apis []persisterAPI) error {
	offered, err := conn.ApiVersions()
	if err != nil {
		return fmt.Errorf("persister: ApiVersions of %s: %w", addr, err)
	}
	byKey := make(map[int16]kafka.ApiVersion, len(offered))
	for _, v := range offered {
		byKey[v.ApiKey] = v
	}
	for _, api := range apis {
		v, ok := byKey[api.key]
		if ok && slices.ContainsFunc(api.versions, func(s int16) bool { return s >= v.MinVersion && s <= v.MaxVersion }) {
			continue
		}
		return &BrokerVersionError{Broker: addr, API: api.name, Key: api.key, Sends: api.versions,
			Min: v.MinVersion, Max: v.MaxVersion, Offered: ok}
	}
	return nil
}
