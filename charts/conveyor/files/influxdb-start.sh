#!/bin/sh
# Start influxd (InfluxDB 1.8, authentication on) and make its users and database, every start
# (idempotent). ADMIN_TOKEN, WRITER_TOKEN and READER_TOKEN are <user>:<password>: the admin
# (all privileges; only this pod has it) makes DATABASE, the writer (WRITE on it: the workers)
# and the reader (READ on it: the gateway). On a volume without users, the admin is made while
# influxd listens on the loopback address only, so that nobody else can make it first. influxd
# takes the rest of its settings from INFLUXDB_* (its HTTP address from
# INFLUXDB_HTTP_BIND_ADDRESS). Needs sh and curl; writes only under $HOME: `initialised` once
# done (the probes look for it). No password is put on a command line.
set -eu
port=${INFLUXDB_HTTP_BIND_ADDRESS##*:}
url=http://127.0.0.1:$port
for name in "${ADMIN_TOKEN%%:*}" "${ADMIN_TOKEN#*:}" "${WRITER_TOKEN%%:*}" "${WRITER_TOKEN#*:}" \
  "${READER_TOKEN%%:*}" "${READER_TOKEN#*:}" "$DATABASE"; do
  case $name in
    '' | *[!A-Za-z0-9_-]*)
      echo "influxdb-start: users, passwords and the database must be letters, digits, _ or -" >&2
      exit 2 ;;
  esac
done
admin=${ADMIN_TOKEN%%:*}
writer=${WRITER_TOKEN%%:*} writer_password=${WRITER_TOKEN#*:}
reader=${READER_TOKEN%%:*} reader_password=${READER_TOKEN#*:}
rm -f "$HOME/initialised"

# start [ADDRESS]: influxd in the background (on ADDRESS, else its configured address); waits
# until it answers.
start() {
  INFLUXDB_HTTP_BIND_ADDRESS=${1:-$INFLUXDB_HTTP_BIND_ADDRESS} influxd &
  pid=$!
  until curl -sf -o /dev/null "$url/ping"; do
    [ "$stopping" = 0 ] || { stop; exit 143; }
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || exit $?
      exit 1
    fi
    sleep 0.5
  done
}

# query TOKEN STATEMENT: InfluxQL over HTTP (TOKEN "-": no credentials), the statement and the
# credentials on stdin and in a file, never in curl's arguments; fails, printing the answer,
# unless it is HTTP 200 without an error.
query() {
  if [ "$1" = - ]; then : >"$HOME/curlrc"; else printf 'user = "%s"\n' "$1" >"$HOME/curlrc"; fi
  code=$(printf '%s' "$2" | curl -sS -K "$HOME/curlrc" -o "$HOME/answer" -w '%{http_code}' \
    --data-urlencode q@- "$url/query") || return 1
  if [ "$code" != 200 ] || grep -q '"error":' "$HOME/answer"; then
    echo "influxdb-start: $2 -> HTTP $code: $(cat "$HOME/answer")" | sed "s/'[^']*'/'***'/g" >&2
    return 1
  fi
}

# stop: end influxd (SIGTERM) and wait for it.
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
}

umask 077
pid='' stopping=0
trap 'stopping=1; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null' TERM INT
# Made once the admin is: until then the volume is new (or its first start was cut short).
made="${INFLUXDB_META_DIR:-/var/lib/influxdb/meta}.admin-made"
if [ ! -e "$made" ]; then
  # The first admin can be made without credentials while InfluxDB has no user, so it is made
  # while influxd listens on the loopback address only. Refused if there is a user already.
  start "127.0.0.1:$port"
  query - "CREATE USER \"$admin\" WITH PASSWORD '${ADMIN_TOKEN#*:}' WITH ALL PRIVILEGES" || true
  stop
  [ "$stopping" = 0 ] || exit 143
fi
start
if ! query "$ADMIN_TOKEN" "SHOW DATABASES"; then
  kill -0 "$pid" 2>/dev/null && echo "influxdb-start: InfluxDB refuses the admin of its" \
    "Secret: its volume holds other users (it outlived the Secret it was made with); delete" \
    "the volume, or put that admin's token back in the Secret" >&2
  stop
  exit 1
fi
touch "$made"
query "$ADMIN_TOKEN" "CREATE DATABASE \"$DATABASE\""
for who in "$writer:$writer_password:WRITE" "$reader:$reader_password:READ"; do
  name=${who%%:*} rest=${who#*:}
  password=${rest%%:*} privilege=${rest#*:}
  # There already: its password and privilege set again below.
  query "$ADMIN_TOKEN" "CREATE USER \"$name\" WITH PASSWORD '$password'" 2>/dev/null || true
  query "$ADMIN_TOKEN" "SET PASSWORD FOR \"$name\" = '$password'"
  query "$ADMIN_TOKEN" "REVOKE ALL ON \"$DATABASE\" FROM \"$name\""
  query "$ADMIN_TOKEN" "GRANT $privilege ON \"$DATABASE\" TO \"$name\""
done
rm -f "$HOME/curlrc" "$HOME/answer"
touch "$HOME/initialised"
echo "influxdb-start: ready: database $DATABASE; $writer may write, $reader read"
# Until influxd ends (a trapped SIGTERM ends a wait early: wait again), with its exit status.
while :; do
  status=0
  wait "$pid" || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
