"""Sparkplug B (Eclipse Sparkplug 3.0) in the ingestor: the payload schema and its codec
(``sparkplug_b.proto``, :mod:`.decoding`, :mod:`.encoding`), topics (:mod:`.topics`), what is
remembered of each edge node and what each message does (:mod:`.sessions`, kept in Redis by
:mod:`.store`), and the ingestor's part (:mod:`.handling`). docs/ingestor.md says how it
behaves."""
