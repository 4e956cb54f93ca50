"""The aiohttp application and the driver that runs one websocket conversation."""
