package kafkastore

// storeConfig holds the settings of New. Owned by the Store's files.
type storeConfig struct {
}
