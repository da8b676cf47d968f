"""The core: what every service and tool shares and nothing else may redefine.

Events and their envelope, settings, structured logs, the topology, the pipeline spec, the bucket
layout and the errors that decide retry or dead-letter. Pure Python on pydantic, fastavro and
structlog: no cloud client is imported from here, and nothing here imports another layer.
"""
