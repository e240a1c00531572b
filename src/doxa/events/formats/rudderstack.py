"""RudderStack events: the Segment Spec again, read by the same mapping (doxa.events.formats.
segment), with RudderStack's habits: identify traits usually sit in `context.traits`, every
call has `originalTimestamp`, and messages carry a `rudderId` or a RudderLabs library name,
which is how auto-detection tells the two apart. A spec message with neither mark reads as
Segment; name `--format rudderstack` to read it as RudderStack (the events are the same but
for ids digested from content, which are prefixed `rudderstack-`).
"""

from __future__ import annotations

from doxa.events.formats.segment import SpecReader

__all__ = ["reader"]

reader = SpecReader(name="rudderstack", id_prefix="rudderstack", by_rudderstack=True)
