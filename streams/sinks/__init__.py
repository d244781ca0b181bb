"""Output encodings of the streams room: InfluxDB line protocol and Kafka records."""
