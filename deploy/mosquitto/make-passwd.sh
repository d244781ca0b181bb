#!/bin/sh
# Build a mosquitto password file from environment variables, so that no password is ever
# committed. The mosquitto container runs it at every start (entrypoint.sh); you can also run
# it on a host with mosquitto_passwd installed (Debian/Ubuntu package `mosquitto`):
#
#   MQTT_INGEST_PASSWORD=... MQTT_ALERTS_PASSWORD=... MQTT_SIMULATOR_PASSWORD=... \
#   MQTT_CONSOLE_PASSWORD=... sh deploy/mosquitto/make-passwd.sh /etc/mosquitto/urbanbrain.passwd
#
# Accounts (the names are fixed; acl grants them their topics):
#   urbanbrain-ingest     MQTT_INGEST_PASSWORD       required
#   urbanbrain-alerts     MQTT_ALERTS_PASSWORD       required
#   urbanbrain-simulator  MQTT_SIMULATOR_PASSWORD    required
#   urbanbrain-console    MQTT_CONSOLE_PASSWORD      required
#   healthcheck           MQTT_HEALTHCHECK_PASSWORD  optional
# plus, if MQTT_DEVICES_FILE names a file, its lines `name:$7$...`: accounts of devices and
# consoles, already hashed with mosquitto_passwd (never plaintext), appended unchanged.
#
# The file is written with mode 0600 and replaced atomically; an empty or missing required
# password is an error, never an account without a password.
set -eu

out=${1:?usage: make-passwd.sh OUTPUT_FILE}

if ! command -v mosquitto_passwd >/dev/null 2>&1; then
    echo "make-passwd.sh: mosquitto_passwd not found (Debian/Ubuntu: apt-get install mosquitto)" >&2
    exit 1
fi

umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: > "$tmp"

# add_user NAME PASSWORD VARIABLE
add_user() {
    if [ -z "$2" ]; then
        echo "make-passwd.sh: $3 is empty; set it in .env (see .env.example)" >&2
        exit 1
    fi
    # -b takes the password as an argument: visible to `ps` for an instant inside this
    # container only, which is acceptable here and keeps the script non-interactive.
    mosquitto_passwd -b "$tmp" "$1" "$2"
}

add_user urbanbrain-ingest "${MQTT_INGEST_PASSWORD:-}" MQTT_INGEST_PASSWORD
add_user urbanbrain-alerts "${MQTT_ALERTS_PASSWORD:-}" MQTT_ALERTS_PASSWORD
add_user urbanbrain-simulator "${MQTT_SIMULATOR_PASSWORD:-}" MQTT_SIMULATOR_PASSWORD
add_user urbanbrain-console "${MQTT_CONSOLE_PASSWORD:-}" MQTT_CONSOLE_PASSWORD
if [ -n "${MQTT_HEALTHCHECK_PASSWORD:-}" ]; then
    add_user healthcheck "$MQTT_HEALTHCHECK_PASSWORD" MQTT_HEALTHCHECK_PASSWORD
fi

if [ -n "${MQTT_DEVICES_FILE:-}" ]; then
    if [ ! -r "$MQTT_DEVICES_FILE" ]; then
        echo "make-passwd.sh: cannot read MQTT_DEVICES_FILE=$MQTT_DEVICES_FILE" >&2
        exit 1
    fi
    lineno=0
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        case "$line" in
            '' | '#'*) continue ;;
        esac
        name=${line%%:*}
        hash=${line#*:}
        case "$name" in
            '' | urbanbrain-* | healthcheck | *[[:space:]+#/]*)
                echo "make-passwd.sh: $MQTT_DEVICES_FILE:$lineno: user name '$name' is empty, reserved or holds a space, +, # or /" >&2
                exit 1 ;;
        esac
        # shellcheck disable=SC2016  # literal $6$ / $7$ hash prefixes
        case "$hash" in
            '$6$'* | '$7$'*) ;;
            *)
                echo "make-passwd.sh: $MQTT_DEVICES_FILE:$lineno: '$name' has no mosquitto password hash (\$7\$...); never store plaintext" >&2
                exit 1 ;;
        esac
        printf '%s\n' "$line" >> "$tmp"
    done < "$MQTT_DEVICES_FILE"
fi

mv -f "$tmp" "$out"
trap - EXIT
