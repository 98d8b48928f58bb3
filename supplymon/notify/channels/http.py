"""POSTing JSON with aiohttp; network failures and timeouts are retriable."""
from __future__ import annotations

import asyncio
from typing import Any, Mapping

import aiohttp
import orjson

from supplymon.notify.channels import DeliveryError, http_failure


async def post_json(session: aiohttp.ClientSession, url: str, body: Any = None, *, data: bytes | None = None,
                    headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                    expect_json: bool = True) -> Any:
    """POST `body` (or the bytes `data`) as JSON; the decoded answer (None if not expected).
    Raises DeliveryError for anything but a 2xx."""
    payload = data if data is not None else orjson.dumps(body)
    try:
        async with session.post(url, data=payload, params=params,
                                headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})}) as resp:
            text = await resp.text()
            if resp.status // 100 != 2:
                raise http_failure(resp.status, text)
            if not expect_json:
                return None
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                raise DeliveryError(f"answer is not JSON: {text[:200]!r}", retriable=True) from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retriable=True) from None
