"""The FastAPI gateway: HTTP in front of the Kafka topics. It never scores in-process."""
