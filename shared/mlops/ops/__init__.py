"""Operator tools: what a person (or a daily job) does to the loop from outside it.

Archive queries, ingest, lineage, replay, registry reports and the demo. They run in the `mlops`
CLI, never in a service, and may use the local stack; no service or library layer imports them.
"""
