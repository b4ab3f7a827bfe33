"""Every consumer by name: `wehub consume NAME` looks it up here.

A consumer is a factory taking the settings and returning a `consumers.runner.Processor`.
Another package adds its own with one line, e.g. `"media": "consumers.media:MediaProcessor"` in CONSUMERS.
Every consumer that writes ClickHouse belongs here: with the embedded engine only the one
`wehub consume all` process may open the data directory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from consumers.runner import Processor
from wehub.settings import Settings

Factory = Callable[[Settings], Processor]

# name -> factory, or "module:attribute" of a factory imported only when that consumer runs,
# so `wehub consume messages` does not import the modules of the other consumers.
CONSUMERS: dict[str, Factory | str] = {
    "messages": "consumers.messages:MessagesProcessor",
    "contacts": "consumers.contacts:ContactsProcessor",
    "rooms": "consumers.rooms:RoomsProcessor",
    "sessions": "consumers.sessions:SessionsProcessor",
    "tasks": "consumers.tasks:TasksProcessor",
    "media": "consumers.media:MediaProcessor",
}


def register(name: str, factory: Factory | str) -> None:
    """Add a consumer; raises ValueError when the name is taken or is `all`."""
    if name == "all" or name in CONSUMERS:
        raise ValueError(f"consumer name {name!r} is already in use: choose another")
    CONSUMERS[name] = factory


def names() -> list[str]:
    return list(CONSUMERS)


def factory(name: str) -> Factory:
    """Return the factory of consumer `name`; raises KeyError for an unknown name."""
    entry = CONSUMERS[name]
    if isinstance(entry, str):
        module_name, _, attribute = entry.partition(":")
        return cast(Factory, getattr(importlib.import_module(module_name), attribute))
    return entry
