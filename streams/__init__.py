"""The Faust app: scoring, hot swap, the feedback join, live accuracy and drift tracking."""
