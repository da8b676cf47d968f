"""One abstract test suite per port, written once and run against every implementation of that port.

`tests/contract/test_<port>_contract.py` subclasses each suite once per implementation (in memory,
emulator-backed, the Vertex stand-in through the real SDK) and supplies the fixture that builds it.
"""
