"""doxa's own event format (`id`, `user_id`, `type`, `timestamp`, `text`, `properties`,
`context`), as a reader like the others, so detection can weigh it and a payload in it can
be read the same way. Files in it are read by doxa.events.parse, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from doxa.events.formats.mapping import Aliases, each_of, field_error

__all__ = ["NativeReader", "reader"]

_REQUIRED = ("id", "type", "timestamp")


class NativeReader:
    name = "doxa"

    def looks_like(self, document: object) -> bool:
        return isinstance(document, Mapping) and all(k in document for k in _REQUIRED)

    def messages(self, document: object) -> Iterator[tuple[int | None, object]]:
        return each_of(document)

    def learn(self, message: object, aliases: Aliases) -> None:
        """doxa events name their user outright."""

    def convert(self, message: object, aliases: Aliases, default_user_id: str | None,
                ) -> list[tuple[dict[str, Any], Mapping[str, str]]]:
        if not isinstance(message, Mapping):
            raise field_error(None, f"expected a JSON object (a doxa event), got "
                              f"{type(message).__name__}")
        return [(dict(message), {})]


reader = NativeReader()
