"""The aiohttp application, the driver that runs one connection's conversation, and the same served in a client's
own process (`local.py`)."""
