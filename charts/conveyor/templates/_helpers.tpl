{{/* Names, truncated to 63 characters as Kubernetes requires. */}}
{{- define "conveyor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "conveyor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<component>, within 63 characters. */}}
{{- define "conveyor.component" -}}
{{- printf "%s-%s" (include "conveyor.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "conveyor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conveyor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "conveyor.labels" -}}
{{ include "conveyor.selectorLabels" . }}
app.kubernetes.io/part-of: conveyor
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "conveyor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pods run as non-root with the runtime's default seccomp profile. */}}
{{- define "conveyor.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "conveyor.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "conveyor.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s:6379/0" (include "conveyor.component" (dict "root" . "component" "redis")) -}}
{{- else -}}
{{- required "set redis.url (or redis.enabled=true for the in-chart Redis)" .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/* An in-chart store's volume (/data of its StatefulSet's pods), of .size, kept or deleted
by `helm uninstall` as volumeClaimsOnUninstall says. */}}
{{- define "conveyor.dataVolumeClaim" -}}
persistentVolumeClaimRetentionPolicy:
  whenDeleted: {{ .root.Values.volumeClaimsOnUninstall }}
  whenScaled: Retain
volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: {{ .size }}}}
{{- end -}}

{{/* InfluxDB: the in-chart one (influxdb.enabled) or influx.url. With the in-chart one, the
token Secrets are its generated Secret; setting influx.url or its Secrets as well is refused. */}}
{{- define "conveyor.influxUrl" -}}
{{- if .Values.influxdb.enabled -}}
{{- if or .Values.influx.url .Values.influx.existingSecret .Values.influx.readSecret -}}
{{- fail "influxdb.enabled runs an InfluxDB in the release and points influx.url and its tokens at it: leave influx.url, influx.existingSecret and influx.readSecret empty (or set influxdb.enabled=false to use your own InfluxDB)" -}}
{{- end -}}
{{- printf "http://%s:8086" (include "conveyor.component" (dict "root" . "component" "influxdb")) -}}
{{- else -}}
{{- .Values.influx.url -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the workers' InfluxDB token (under influx.tokenKey); empty: none. */}}
{{- define "conveyor.influxSecret" -}}
{{- if .Values.influxdb.enabled -}}
{{- include "conveyor.component" (dict "root" . "component" "influxdb") -}}
{{- else -}}
{{- .Values.influx.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the gateway's read-only token (under influx.readTokenKey); empty: none. */}}
{{- define "conveyor.influxReadSecret" -}}
{{- if .Values.influxdb.enabled -}}
{{- include "conveyor.component" (dict "root" . "component" "influxdb") -}}
{{- else -}}
{{- .Values.influx.readSecret -}}
{{- end -}}
{{- end -}}

{{/* Where publishers reach the broker (NOTES.txt). */}}
{{- define "conveyor.brokerUrl" -}}
{{- if .Values.mqtt.enabled -}}
{{- printf "mqtt://%s:1883" (include "conveyor.component" (dict "root" . "component" "mosquitto")) -}}
{{- else -}}
{{- required "set mqtt.brokerUrl (or mqtt.enabled=true for the in-chart Mosquitto)" .Values.mqtt.brokerUrl -}}
{{- end -}}
{{- end -}}

{{/* Where the ingestors reach the broker: the in-chart one's ingestor listener (its own Service,
which routes to the broker before it is ready for publishers: mosquitto-service.yaml), or
mqtt.brokerUrl. */}}
{{- define "conveyor.ingestorBrokerUrl" -}}
{{- if .Values.mqtt.enabled -}}
{{- printf "mqtt://%s:%d" (include "conveyor.component" (dict "root" . "component" "mosquitto-ingest")) (include "conveyor.mqttIngestorPort" . | int) -}}
{{- else -}}
{{- include "conveyor.brokerUrl" . -}}
{{- end -}}
{{- end -}}

{{/* The in-chart broker's listener for the ingestors (publishers use 1883). */}}
{{- define "conveyor.mqttIngestorPort" -}}1884{{- end -}}

{{/* The Secret holding the Redis password: the installer's, or the one the chart generates
(redis-secret.yaml). Redis always has a password. */}}
{{- define "conveyor.redisSecretName" -}}
{{- default (include "conveyor.component" (dict "root" . "component" "redis")) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "conveyor.redisSecretKey" -}}
{{- .Values.redis.passwordKey -}}
{{- end -}}

{{/* "true" when Redis has a password (always, unless redis.auth=false for an external Redis
without one); empty otherwise. */}}
{{- define "conveyor.redisAuth" -}}
{{- if or .Values.redis.enabled .Values.redis.auth }}true{{ end -}}
{{- end -}}

{{/* The Secret holding the ingestor's broker credentials (keys username and password): the
installer's, or the one the chart generates for the in-chart broker. */}}
{{- define "conveyor.mqttSecretName" -}}
{{- default (include "conveyor.component" (dict "root" . "component" "mqtt")) .Values.mqtt.existingSecret -}}
{{- end -}}

{{/* The ServiceAccount worker pods run as (no API access, no token mounted). */}}
{{- define "conveyor.workerServiceAccount" -}}
{{- include "conveyor.component" (dict "root" . "component" "worker") -}}
{{- end -}}

{{/* Environment every Conveyor process shares: Redis, logging, probes. */}}
{{- define "conveyor.commonEnv" -}}
- name: REDIS_URL
  value: {{ include "conveyor.redisUrl" . | quote }}
- name: REDIS_CLUSTER
  value: {{ .Values.redis.cluster | quote }}
{{- if include "conveyor.redisAuth" . }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "conveyor.redisSecretName" . }}
      key: {{ include "conveyor.redisSecretKey" . }}
{{- end }}
- name: PROBE_PORT
  value: "8080"
- name: CONVEYOR_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end -}}

{{- define "conveyor.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: http-probes}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http-probes}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/*
A pod template's metadata: the component's podLabels and podAnnotations merged under the
chart's own labels (and "annotations" given by the template), which win: NetworkPolicies,
Services and PodDisruptionBudgets select by them.
Call with (dict "root" $ "component" "ingestor" "values" .Values.ingestor ["annotations" dict]).
*/}}
{{- define "conveyor.podMetadata" -}}
{{- $own := include "conveyor.labels" (dict "root" .root "component" .component) | fromYaml }}
labels: {{- merge $own (deepCopy (.values.podLabels | default dict)) | toYaml | nindent 2 }}
{{- $annotations := merge (deepCopy (.annotations | default dict)) (deepCopy (.values.podAnnotations | default dict)) }}
{{- with $annotations }}
annotations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Where a component's pods may run: its nodeSelector, tolerations, affinity,
topologySpreadConstraints and priorityClassName. With "spread" true (the ingestor's
spreadAcrossNodes), replicas also spread over nodes (ScheduleAnyway: never left pending for it).
*/}}
{{- define "conveyor.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or .values.topologySpreadConstraints .spread }}
topologySpreadConstraints:
  {{- if .spread }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "conveyor.selectorLabels" (dict "root" .root "component" .component) | nindent 8 }}
  {{- end }}
  {{- with .values.topologySpreadConstraints }}{{ toYaml . | nindent 2 }}{{ end }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}
