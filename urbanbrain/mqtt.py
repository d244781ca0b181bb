"""MQTT client security from settings, in one place for every urbanbrain client."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from urbanbrain.settings import Settings


def apply_security(client: mqtt.Client, settings: Settings) -> mqtt.Client:
    """Username/password and, for ``mqtts://`` URLs, TLS with certificate verification."""
    if settings.mqtt_username:
        client.username_pw_set(
            settings.mqtt_username,
            settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
        )
    if settings.mqtt_tls:
        client.tls_set(
            ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
            certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
            keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return client
