"""Each user's calibrated model, kept while the store hands back the model it was made from.

Reading a model through its calibration profiles copies every record the profiles cover
and computes their features: about as much work as a decision point can afford in total,
and a new object each time, which the server's page cache (`doxa.server.reads`) takes as a
new model. Between two commits the store returns the very same frozen model object (the
SQL stores check the user's commit row on every load, `doxa.store.snapshots`; the memory
store holds one object), so the calibrated view of that object is kept beside a weak
reference to it and handed out again while the store hands out the same object, and made
anew as soon as it hands out another. The view can therefore never be staler than the
store's own read, and a model faded to a moment (a new object per read) is never kept.

The views live in the engine object (an edge), not in module state, bounded by users,
least recently read out first.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import NamedTuple

from doxa.calibration.apply import Calibrator
from doxa.model.records import UserModel

KEPT_USERS = 256
"""Users whose calibrated model an engine keeps (as many as a SQL store keeps parsed)."""


class _View(NamedTuple):
    stored: weakref.ref[UserModel]
    calibrator: Calibrator
    view: UserModel


class CalibratedViews:
    """`views.of(stored, calibrator)`: `calibrator.calibrate(stored)`, made once per stored
    model object and calibrator."""

    def __init__(self, capacity: int = KEPT_USERS) -> None:
        self.capacity = capacity
        self._held: OrderedDict[str, _View] = OrderedDict()

    def of(self, stored: UserModel, calibrator: Calibrator) -> UserModel:
        user = stored.user_id
        held = self._held.get(user)
        if held is not None and held.stored() is stored and held.calibrator is calibrator:
            self._held.move_to_end(user)
            return held.view
        view = calibrator.calibrate(stored)
        self._held[user] = _View(weakref.ref(stored), calibrator, view)
        self._held.move_to_end(user)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)
        return view

    def forget(self, user_id: str) -> None:
        self._held.pop(user_id, None)
