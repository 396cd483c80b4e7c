package kafkatest

import (
	"context"
	"os/exec"
	"path/filepath"

	"github.com/go-whisk/activationstore/internal/childproc"
)

// JavaClientVersion is the Apache Kafka release whose Java clients tests
// run as a JVM producer would (JavaCommand): kafka-clients 3.9.1 is what
// OpenWhisk's Scala controllers and invokers publish with
// (common/scala/build.gradle).
const JavaClientVersion = "3.9.1"

// JavaCommand returns a command that runs main class of Apache Kafka
// version's jars (kafka_2.13 and its dependencies, resolved from Maven
// Central into the user's cache directory on first use, as for the
// brokers) with a small heap, for Kafka's own tools: e.g.
// "kafka.tools.ConsoleProducer" (kafka-console-producer.sh) or
// "kafka.admin.ConfigCommand". The JVM is killed when ctx is done or the
// test binary dies.
func JavaCommand(ctx context.Context, version, class string, args ...string) (*exec.Cmd, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errNoJava
	}
	lib, err := kafkaJars(ctx, version)
	if err != nil {
		return nil, err
	}
	c := &apacheCluster{classpath: filepath.Join(lib, "*")}
	cmd := exec.CommandContext(ctx, java, append(append(c.jvmArgs("256m"), class), args...)...)
	cmd.SysProcAttr = childproc.SysProcAttr()
	return cmd, nil
}
