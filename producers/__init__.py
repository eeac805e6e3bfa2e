"""irisflow's Python clients: HTTP (/v1 and the Open Inference Protocol) and Kafka."""
