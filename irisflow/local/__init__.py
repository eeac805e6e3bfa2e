"""The roof's machinery for one machine: ``irisflow up``'s supervisor, the local Prometheus and
the embedded Kafka broker. Only the CLI (and tests) import it; the core and the roles never do.
"""
