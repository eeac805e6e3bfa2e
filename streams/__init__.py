"""The Faust app: scoring, hot swap and (later) the feedback join and drift tracking."""
