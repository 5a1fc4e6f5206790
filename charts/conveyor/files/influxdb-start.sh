#!/bin/sh
# Start influxd (InfluxDB 1.8, authentication on) and make its users and database, every start
# (idempotent): WRITER_TOKEN and READER_TOKEN are <user>:<password>; DATABASE is created by the
# writer, who has all privileges; the reader gets READ on it. influxd takes the rest of its
# settings from INFLUXDB_* (its HTTP port from INFLUXDB_HTTP_BIND_ADDRESS). Needs sh and curl;
# writes only under $HOME: `initialised` once done (the probes look for it).
set -eu
url=http://127.0.0.1:${INFLUXDB_HTTP_BIND_ADDRESS##*:}
writer=${WRITER_TOKEN%%:*} writer_password=${WRITER_TOKEN#*:}
reader=${READER_TOKEN%%:*} reader_password=${READER_TOKEN#*:}
for name in "$writer" "$writer_password" "$reader" "$reader_password" "$DATABASE"; do
  case $name in
    '' | *[!A-Za-z0-9_-]*)
      echo "influxdb-start: users, passwords and the database must be letters, digits, _ or -" >&2
      exit 2 ;;
  esac
done
rm -f "$HOME/initialised"
influxd &
pid=$!
trap 'kill -TERM "$pid"' TERM INT

# query USER PASSWORD STATEMENT: InfluxQL over HTTP; fails, printing the answer, unless it is
# HTTP 200 without an error.
query() {
  code=$(curl -sS -o "$HOME/answer" -w '%{http_code}' -u "$1:$2" --data-urlencode "q=$3" \
    "$url/query") || return 1
  if [ "$code" != 200 ] || grep -q '"error"' "$HOME/answer"; then
    echo "influxdb-start: $3 -> HTTP $code: $(cat "$HOME/answer")" | sed "s/'[^']*'/'***'/" >&2
    return 1
  fi
}

until curl -sf -o /dev/null "$url/ping"; do
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
  sleep 0.5
done
# The first admin can be made without credentials only while InfluxDB has no user at all.
if ! query "$writer" "$writer_password" "SHOW DATABASES" 2>/dev/null; then
  curl -sS -o /dev/null --data-urlencode \
    "q=CREATE USER \"$writer\" WITH PASSWORD '$writer_password' WITH ALL PRIVILEGES" \
    "$url/query"
  query "$writer" "$writer_password" "SHOW DATABASES" || {
    echo "influxdb-start: InfluxDB refuses the writer of its Secret: its data holds other users" \
      "(a volume that outlived its Secret); delete the volume, or put that writer's token in" \
      "the Secret" >&2
    kill -TERM "$pid"; wait "$pid"; exit 1
  }
fi
query "$writer" "$writer_password" "CREATE DATABASE \"$DATABASE\""
query "$writer" "$writer_password" "CREATE USER \"$reader\" WITH PASSWORD '$reader_password'" \
  2>/dev/null || true  # there already: its password set again below
query "$writer" "$writer_password" "SET PASSWORD FOR \"$reader\" = '$reader_password'"
query "$writer" "$writer_password" "GRANT READ ON \"$DATABASE\" TO \"$reader\""
touch "$HOME/initialised"
echo "influxdb-start: ready: database $DATABASE, writer $writer, reader $reader (READ)"
# A trapped SIGTERM ends a wait early: wait again until influxd itself has ended.
status=0
while kill -0 "$pid" 2>/dev/null; do
  if wait "$pid"; then status=0; else status=$?; fi
done
exit "$status"
