"""Fitting a conversation into a model's context window.

Long dialogues (5 turns of 400-token replies, plus a long system prompt) can outgrow a
small model's context. We drop the oldest exchanges, never the system message or the
latest message, and warn once per model so that the user knows histories were cut.
"""

from __future__ import annotations

import logging
from typing import Callable

from mtsa.models.base import Conversation

log = logging.getLogger(__name__)


def truncate_oldest(conversation: Conversation, fits: Callable[[Conversation], bool], model_name: str) -> Conversation:
    """Drop the oldest non-system messages until `fits(conversation)` holds.

    Messages go in pairs where possible so that roles keep alternating. The latest message
    always stays, even if it alone does not fit (the backend then cuts tokens itself).
    """
    if fits(conversation):
        return conversation
    head = [m for m in conversation[:1] if m["role"] == "system"]
    body = conversation[len(head):]
    while len(body) > 1 and not fits(head + body):
        body = body[2:] if len(body) > 2 else body[1:]
    if model_name not in _warned:
        _warned.add(model_name)
        log.warning("%s: a conversation exceeded the context window; dropped its oldest turns", model_name)
    return head + body


_warned: set[str] = set()
