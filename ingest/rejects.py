"""Why a payload was refused: stable reason codes for the dead-letter topic and metrics.

Codes are part of the contract (dashboards group dead letters by them, operators grep for
them), so they are a closed set; the human message says the specifics.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    TOO_LARGE = "too_large"  # payload above the configured size limit
    NOT_UTF8 = "not_utf8"  # binary or badly encoded text
    MALFORMED = "malformed"  # not parseable as the format it claims to be
    SCHEMA = "schema"  # parseable, but required fields missing or of the wrong type
    UNKNOWN_FORMAT = "unknown_format"  # no decoder recognises it
    BAD_TOPIC = "bad_topic"  # topic does not map to district/domain/kind/sensor
    INVALID_ID = "invalid_id"  # identifier with control characters, backslash or too long
    UNKNOWN_SENSOR = "unknown_sensor"  # not in the device registry (policy: reject)
    UNKNOWN_METRIC = "unknown_metric"  # metric name/unit not in the catalogue
    NOT_FINITE = "not_finite"  # NaN or infinity
    OUT_OF_RANGE = "out_of_range"  # physically implausible value for the metric
    BAD_TIMESTAMP = "bad_timestamp"  # too far in the future or the past, or unparseable
    DUPLICATE = "duplicate"  # exact resend inside the dedup window
    DOMAIN_MISMATCH = "domain_mismatch"  # metric of another domain than the sensor's
    LATE = "late"  # (streams) event time behind the window's allowed lateness
    UNKNOWN_FIELD = "unknown_field"  # a field no part of the device profile names (policy)


class Reject(Exception):
    """Raised by decoders and validators; becomes one dead-letter record."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
