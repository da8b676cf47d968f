"""Testing support: in-memory implementations of the ports and the port contract suites.

`mlops.testing.memory` holds an in-memory implementation of every port, for unit tests only (no
running service ever builds one). `mlops.testing.contracts` holds one abstract test suite per port;
`tests/contract` runs each against every implementation, in memory and emulator-backed, so a unit
test that passes on memory cannot rely on a behaviour the real adapter lacks. Imports pytest: never
imported by a service.
"""
