package losstest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/go-whisk/activationstore/internal/kafkatest"
	"github.com/go-whisk/activationstore/internal/logtest"
)

// brokerChildEnv, when set, makes the test binary a Kafka broker process
// rather than a test run: see TestMain and startBrokerProcess.
const brokerChildEnv = "LOSSTEST_BROKER_CHILD"

// runBrokerChild runs the internal/kafkatest broker until stdin closes:
// it prints "addr <host:port>" once it listens. The parent holds the other
// end of stdin, so the broker dies with the parent, even a killed one.
func runBrokerChild() int {
	b, err := kafkatest.New()
	if err != nil {
		fmt.Fprintf(os.Stderr, "losstest broker child: %v\n", err)
		return 1
	}
	defer b.Close()
	fmt.Printf("addr %s\n", b.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startBrokerProcess starts the same broker as kafkatest.Start in a child
// process (this test binary, re-executed), so that the broker's memory —
// the records it holds, the fetch responses it builds — stays out of this
// process's heap, and returns its address. It stops when the test ends.
func startBrokerProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), brokerChildEnv+"=1")
	var stderr logtest.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("losstest: broker process stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("losstest: broker process stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("losstest: start broker process %s: %v", os.Args[0], err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("losstest: broker process did not exit within 10 s of its stdin closing; killed")
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
				addr <- a
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		return a
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("losstest: broker process exited before listening: %v; stderr: %s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("losstest: broker process not listening after 30 s; stderr: %s", stderr.String())
	}
	return ""
}

// createTopic creates a topic with one replica on the broker at addr.
func createTopic(t testing.TB, addr, topic string, partitions int) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("losstest: create topic %q on %s: %v", topic, addr, err)
	}
}
