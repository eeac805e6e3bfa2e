"""The embedded Apache Kafka broker: jars from Maven Central (``pom.xml``), KRaft, start/stop."""
