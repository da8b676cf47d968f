pytest_plugins = ["tests.fixtures.emulators"]
