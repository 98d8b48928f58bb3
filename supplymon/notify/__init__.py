"""Notifications: who hears of an alert, on which channel, in which words, once.

Pure parts (no I/O): `directory` (the recipients file), `routing` (alert ->
recipients and channels), `ratelimit` (robot limits and folding), `digest` (daily
digests on event time), `tokens` (signed acknowledgement links), `render`
(templates). The shell: `channels` (vendor clients), `dispatcher` (queues,
retries, the delivery log); the agent is `agents/notifier.py`.
"""
