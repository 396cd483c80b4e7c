package kafkastore

import "github.com/go-whisk/activationstore/store"

// SpoolPayload is what a Store with default options spools for a, bound
// for topic: the bytes the spool benchmark's ceiling writes.
func SpoolPayload(topic string, a *store.Activation) ([]byte, error) {
	s := &Store{contentType: ContentTypeResultMessage}
	msg, err := s.record(a, store.UserContext{})
	if err != nil {
		return nil, err
	}
	return appendSpoolRecord(nil, topic, &msg), nil
}
