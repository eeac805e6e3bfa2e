"""The audit trail: every request, prediction, feedback and drift alarm, in a SQL database.

Fed from the topics (:mod:`gateway.audit.feed`), never written by the request path, so it
records what really happened on Kafka, including traffic that never went through a gateway.
"""
