package persister

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// persistedTopics maps each followed topic to its partition count; a change
// of either means the group must be rejoined.
type persistedTopics map[string]int

func (t persistedTopics) names() []string { return slices.Sorted(maps.Keys(t)) }

func (t persistedTopics) String() string {
	var b strings.Builder
	for i, n := range t.names() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s[%d]", n, t[n])
	}
	return b.String()
}

// discoverTopics lists the topics matching the pattern. kafka-go has no
// pattern subscription, and its Transport serves metadata from a cache, so
// this asks a broker directly on a fresh connection. The first time a
// broker answers, it also checks that the broker accepts the request
// versions kafka-go sends (a *BrokerVersionError otherwise).
func (p *Persister) discoverTopics(ctx context.Context) (persistedTopics, error) {
	var errs []error
	for _, addr := range p.cfg.conn.Brokers {
		conn, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		deadline := time.Now().Add(10 * time.Second)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetDeadline(deadline)
		if !p.versionsChecked {
			if err := checkAPIVersions(conn, addr, p.apis); err != nil {
				_ = conn.Close()
				if errors.Is(err, ErrUnsupportedBroker) {
					return nil, err
				}
				errs = append(errs, err)
				continue
			}
			p.versionsChecked = true
		}
		parts, err := conn.ReadPartitions()
		_ = conn.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		topics := persistedTopics{}
		for _, pt := range parts {
			if p.follows(pt.Topic) {
				topics[pt.Topic]++
			}
		}
		return topics, nil
	}
	return nil, fmt.Errorf("persister: list topics on %v: %w", p.cfg.conn.Brokers, errors.Join(errs...))
}

// follows reports whether the persister consumes topic.
func (p *Persister) follows(topic string) bool {
	return topic != p.cfg.deadLetterTopic &&
		!strings.HasPrefix(topic, "__") && // __consumer_offsets, __transaction_state
		p.cfg.topicPattern.MatchString(topic)
}

// watchTopics calls changed and returns when the matching topics or their
// partition counts differ from current.
func (p *Persister) watchTopics(ctx context.Context, current persistedTopics, changed func()) {
	t := time.NewTicker(p.cfg.topicRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, err := p.discoverTopics(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("persister cannot list topics; keeping the current ones", "err", err)
			}
			continue
		}
		if !maps.Equal(now, current) {
			p.log.Info("persister topics changed; rejoining the group",
				"was", current.String(), "now", now.String())
			changed()
			return
		}
	}
}
