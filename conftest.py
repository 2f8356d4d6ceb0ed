pytest_plugins = ["mlc_sandbox.testing"]
