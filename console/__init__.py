"""The operations console: a live web application for the operations centre, and the
alert operations of the command line (``urbanbrain alerts``, ``urbanbrain silences``).

Everything an operator changes is a Kafka record (``alerts.silences``, ``alerts.audit``);
the console and the CLI rebuild their view from ``alerts``, ``alerts.audit`` and
``alerts.silences`` (:mod:`.view`), so nothing lives only in a process. See README.md.
"""
