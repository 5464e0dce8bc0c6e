"""Answer extractors and voting (see :mod:`.base`). Importing the package registers the
built-in kinds, one module each: ``choice``, ``number``, ``code``, ``exact``, ``json``
(:mod:`.jsonfield`) and ``embedding``; :func:`detect_kind` guesses one from a request and
:mod:`.vote` tallies the keys. :mod:`.bench` times a check (imported on demand)."""

from coe_gateway.answers import choice as _choice  # noqa: F401  (registers kinds)
from coe_gateway.answers import code as _code  # noqa: F401
from coe_gateway.answers import embedding as _embedding  # noqa: F401
from coe_gateway.answers import exact as _exact  # noqa: F401
from coe_gateway.answers import jsonfield as _jsonfield  # noqa: F401
from coe_gateway.answers import number as _number  # noqa: F401
from coe_gateway.answers.base import EXTRACTORS, Extractor, build_extractor, register_extractor
from coe_gateway.answers.detect import detect_kind
from coe_gateway.answers.vote import Tally, posterior, tally, vote_weight

__all__ = ["EXTRACTORS", "Extractor", "Tally", "build_extractor", "detect_kind",
           "posterior", "register_extractor", "tally", "vote_weight"]
