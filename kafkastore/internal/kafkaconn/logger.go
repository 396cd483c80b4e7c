package kafkaconn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Logger sends kafka-go's log lines (kafka.Logger) to slog at Level. Lines
// about a cancelled operation (a reader stopped by a rebalance or a
// shutdown) go at debug level whatever Level is.
type Logger struct {
	Log   *slog.Logger
	Level slog.Level
}

func (l Logger) Printf(format string, args ...any) {
	ctx := context.Background()
	if !l.Log.Enabled(ctx, min(l.Level, slog.LevelDebug)) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	level := l.Level
	if strings.Contains(msg, "operation was canceled") || strings.Contains(msg, context.Canceled.Error()) {
		level = slog.LevelDebug
	}
	l.Log.Log(ctx, level, "kafka-go: "+msg)
}
