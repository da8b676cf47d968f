"""The Avro schemas of every event, shipped inside the shared library as package data (mlops.schemas)."""
