{{/* Generated credentials and byte sizes, for redis-secret.yaml, mqtt-secret.yaml and the
in-chart servers. */}}

{{/* A value for key .key of the chart-generated Secret .name, base64: the one it already holds
(helm `lookup`, as the Bitnami charts do, so that an upgrade keeps the password every client
has), else a new random one. `helm template` cannot look up and renders a new one each time. */}}
{{- define "conveyor.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- .default | default (randAlphaNum 40) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* A memory quantity (512Mi, 1Gi, 500M, 536870912) as bytes; fails on anything else. */}}
{{- define "conveyor.bytes" -}}
{{- if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- int64 . -}}
{{- else -}}
{{- $q := toString . -}}
{{- $digits := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $digits $q -}}
{{- $scale := dict "" 1 "k" 1000 "K" 1000 "Ki" 1024 "M" 1000000 "Mi" 1048576 "G" 1000000000 "Gi" 1073741824 "T" 1000000000000 "Ti" 1099511627776 -}}
{{- if or (not $digits) (not (hasKey $scale $unit)) -}}
{{- fail (printf "cannot read %q as a memory size: use e.g. 512Mi, 1Gi, 500M or 536870912" $q) -}}
{{- end -}}
{{- mul (atoi $digits) (index $scale $unit) -}}
{{- end -}}
{{- end -}}

{{/* The in-chart Redis's maxmemory in bytes: redis.maxmemory, else 80 % of its memory limit
(the rest is for the AOF rewrite buffer, client buffers and fragmentation). */}}
{{- define "conveyor.redisMaxmemory" -}}
{{- if .Values.redis.maxmemory -}}
{{- include "conveyor.bytes" .Values.redis.maxmemory -}}
{{- else -}}
{{- $limit := dig "limits" "memory" "" (.Values.redis.resources | default dict) -}}
{{- if not $limit -}}
{{- fail "the in-chart Redis needs a bound: set redis.resources.limits.memory (maxmemory is 80 % of it) or redis.maxmemory" -}}
{{- end -}}
{{- div (mul (include "conveyor.bytes" $limit | int64) 4) 5 -}}
{{- end -}}
{{- end -}}

{{/* The in-chart broker's max_packet_size: above the ingestor's largest payload. */}}
{{- define "conveyor.mqttMaxPacketSize" -}}
{{- $payload := int64 .Values.ingestor.maxPayloadBytes -}}
{{- if .Values.mqtt.maxPacketSize -}}
{{- if le (int64 .Values.mqtt.maxPacketSize) $payload -}}
{{- fail (printf "mqtt.maxPacketSize (%d) must exceed ingestor.maxPayloadBytes (%d): the ingestor dead-letters oversized payloads only if the broker lets them through" (int64 .Values.mqtt.maxPacketSize) $payload) -}}
{{- end -}}
{{- int64 .Values.mqtt.maxPacketSize -}}
{{- else -}}
{{- add $payload 65536 -}}
{{- end -}}
{{- end -}}
