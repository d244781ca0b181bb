#!/bin/sh
# Entrypoint of the mosquitto service in compose.yaml. It runs as root inside the official
# eclipse-mosquitto image, writes every credential to /mosquitto/secrets (a tmpfs, so nothing
# secret reaches a disk), and hands over to the image's own entrypoint, which starts
# mosquitto; mosquitto then drops to its `mosquitto` user, which is why the files it reads
# after that (password file, ACL, TLS key) are owned by that user, mode 0600.
set -eu

config=/mosquitto/config
secrets=/mosquitto/secrets
umask 077
mkdir -p "$secrets"

# The compose healthcheck logs in as `healthcheck` with a password made up now and readable
# only inside this container: one secret less for the operator to manage.
MQTT_HEALTHCHECK_PASSWORD=$(tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32)
export MQTT_HEALTHCHECK_PASSWORD
printf '%s' "$MQTT_HEALTHCHECK_PASSWORD" > "$secrets/healthcheck.secret"

# Device accounts (hashed lines), if the operator put them next to this script.
if [ -z "${MQTT_DEVICES_FILE:-}" ] && [ -f "$config/devices.passwd" ]; then
    MQTT_DEVICES_FILE="$config/devices.passwd"
    export MQTT_DEVICES_FILE
fi

sh "$config/make-passwd.sh" "$secrets/passwd"
cp "$config/acl" "$secrets/acl"

# TLS files, if any (see mosquitto.conf): copies the mosquitto user can read, nobody else.
if [ -d "$config/certs" ]; then
    mkdir -p "$secrets/certs"
    for f in "$config"/certs/*.crt "$config"/certs/*.pem "$config"/certs/*.key; do
        if [ -f "$f" ]; then cp "$f" "$secrets/certs/"; fi
    done
fi

chown -R mosquitto:mosquitto "$secrets"
chmod -R go-rwx "$secrets"

# The broker needs none of the plaintext passwords.
unset MQTT_INGEST_PASSWORD MQTT_ALERTS_PASSWORD MQTT_SIMULATOR_PASSWORD MQTT_CONSOLE_PASSWORD \
    MQTT_HEALTHCHECK_PASSWORD

exec /docker-entrypoint.sh "$@"
