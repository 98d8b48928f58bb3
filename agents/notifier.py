"""The notifier agent: alerts from the alerts topic to the people they concern.

Thin shell around `supplymon.notify`: each batch of alert rows is routed, checked
against the delivery log (`notifications`) and queued on the dispatcher's lanes
(sent in the background, so a slow receiver never holds the stream); a timer
sends the daily digests once stream time (the early warnings' watermark, the
least over every input partition) passes the digest time. On with a recipients
directory (SUPPLYMON_RECIPIENTS) unless SUPPLYMON_NOTIFY=0 (`replay` without
`--notify`). Digests are sent by the worker that holds the alerts topic's
partition 0; alert deliveries by the worker that reads the alert.
"""
from __future__ import annotations

import logging

from faust.types import TP

from agents.lifecycle import sink
from agents.sequence import in_sequence
from streams.app import alerts_topic, app, key_partition, settings
from streams.continuity import OffsetContinuity
from supplymon.notify.service import Notifier

log = logging.getLogger(__name__)


notifier: Notifier | None = None
if settings.notify and settings.recipients_file:
    notifier = Notifier.from_settings(settings, sink.on_store)  # the directory is validated here, at start


read_up_to: dict[int, int] = {}  # alerts partition -> next offset to read
continuity = OffsetContinuity()  # alerts lost in a rebalance's discarded fetch are read again


def _alerts_behind() -> int:
    """Alerts on the topic this worker has not read yet (by the fetches' high watermarks)."""
    behind = 0
    for tp in app.consumer.assignment():
        if tp.topic == settings.topics.alerts:
            behind += max(0, (app.consumer.highwater(tp) or 0) - read_up_to.get(tp.partition, 0))
    return behind


def _held(partition: int) -> bool:
    return TP(settings.topics.alerts, partition) in app.consumer.assignment()


_resume = True  # after each assignment: deliveries left pending in the partitions now held


@app.on_rebalance_complete.connect
async def _on_rebalance(sender, **kwargs) -> None:
    global _resume
    _resume = True


if notifier is not None:
    @app.agent(alerts_topic)
    async def notify(stream):
        await sink.open()
        try:
            async for events in stream.take_events(500, within=settings.batch_seconds):
                continuity.keep_only(app.consumer.assignment())
                events = await in_sequence(continuity, events)
                await notifier.on_alerts([event.value for event in events])  # logged before acknowledged
                for event in events:
                    read_up_to[event.message.partition] = event.message.offset + 1
        finally:
            await notifier.close()

    @app.timer(interval=1.0)
    async def notify_clock():
        """Resumes pending deliveries after an assignment; sends the digests stream time made due."""
        global _resume
        from agents.warnings import warnings

        try:
            if _resume and any(tp.topic == settings.topics.alerts for tp in app.consumer.assignment()):
                _resume = False
                resumed = await notifier.resume(lambda alert_id: _held(key_partition(alert_id)))
                if resumed:
                    log.info("resumed %d deliveries left pending", resumed)
            watermark = warnings.stream_time()
            if watermark is not None and _held(0):
                await notifier.on_stream_time(watermark)
        except Exception:  # keep the clock going; the next tick tries again
            log.exception("notifications: resuming or sending digests failed")

    @app.page("/notify/progress")
    async def notify_progress(web, request):
        from agents.warnings import warnings

        return web.json(dict(notifier.progress(warnings.stream_time()), alerts_behind=_alerts_behind()))
