"""The `offset` of every paged list: a non-negative integer up to MAX_PAGE_OFFSET.

A database skips `offset` rows to answer, so a huge one is a cheap way to make it work hard (and
one past a 64-bit integer was a 500). Routes take it as `offset: PageOffset` (keyword-only, since a
dependency has no default: `..., limit: ... = 50, *, offset: PageOffset)`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from server.errors import ApiError

_DIGITS = re.compile(r"\d{1,30}")


def _whole_number(value: Any) -> Any:
    # Not pydantic's lax int parsing ("1.0", "1_000", " 5 "): digits only, and an error that names the limit.
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise PydanticCustomError("int_parsing", "offset must be a whole number from 0 to MAX_PAGE_OFFSET; got {value}",
                                  {"value": value[:40]})
    return value


async def page_offset(request: Request, offset: Annotated[int, BeforeValidator(_whole_number), Query(
        ge=0, description="Rows to skip: a non-negative integer, at most MAX_PAGE_OFFSET")] = 0) -> int:
    limit = int(request.app.state.settings.max_page_offset)
    if offset > limit:
        raise ApiError(422, "validation_error", f"query.offset: {offset} is over the limit of {limit} (MAX_PAGE_OFFSET); "
                       "narrow the list with its filters instead of paging that far",
                       {"field": "query.offset", "setting": "MAX_PAGE_OFFSET", "limit": limit, "value": offset,
                        "errors": [{"field": "query.offset", "message": f"at most {limit} (MAX_PAGE_OFFSET)",
                                    "type": "less_than_equal", "setting": "MAX_PAGE_OFFSET", "limit": limit,
                                    "value": offset}]})
    return offset


PageOffset = Annotated[int, Depends(page_offset)]
