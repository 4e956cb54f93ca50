"""Tools: Python functions the model may call, run by the SDK (client side) or by the runtime (server side).

    @tool
    async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
        '''The current weather in a city.

        Args:
            city: the city's name, in English.
        '''

    async with connect(url, tools=Tools([get_weather, book_table], timeout=10.0)) as conn:
        await conn.add_message("user", text="Is it warm in Lisbon?")
        print(await conn.create_response().collect())  # the calls are run and the response continued

The same functions serve the server: `aural serve --tools package.module:attr` loads them with
`load_tools` and the runtime runs their calls with `Tools.run`.

    schema.py   definitions: JSON Schema from type hints and docstrings, arguments validated by it
    tool.py     `@tool` / `Tool`: one function, its definition, its arguments parsed, its call
    runner.py   `Tools`: the registry, its dispatch (timeouts, error outputs) and its round policy
    loader.py   `load_tools`: `package.module:attr` specs
"""

from .loader import ToolLoadError, load_tools
from .runner import DEFAULT_MAX_ROUNDS, DEFAULT_TIMEOUT, ToolCall, Tools
from .schema import arguments_model, schema_from_function
from .tool import ArgumentsError, Tool, tool

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_TIMEOUT",
    "ArgumentsError",
    "Tool",
    "ToolCall",
    "ToolLoadError",
    "Tools",
    "arguments_model",
    "load_tools",
    "schema_from_function",
    "tool",
]
