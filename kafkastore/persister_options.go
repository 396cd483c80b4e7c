package kafkastore

// persisterConfig holds the settings of NewPersister. Owned by the Persister's files.
type persisterConfig struct {
}
