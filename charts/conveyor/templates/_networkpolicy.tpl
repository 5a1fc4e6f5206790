{{/* Pieces of the NetworkPolicies (*-networkpolicy.yaml). Every peer in the release is a pod
selector AND a selector of the release's namespace, so that no pod of another namespace can
satisfy it whatever its labels. */}}

{{/* The release's namespace, as a namespaceSelector. */}}
{{- define "conveyor.np.namespace" -}}
namespaceSelector:
  matchLabels: {kubernetes.io/metadata.name: {{ .Release.Namespace }}}
{{- end -}}

{{/* A peer: the pods of component .component of this release. */}}
{{- define "conveyor.np.component" -}}
- {{ include "conveyor.np.namespace" .root | nindent 2 | trim }}
  podSelector:
    matchLabels: {{- include "conveyor.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* A peer: this release's worker pods (the operator labels them conveyor.io/release). With a
cluster-wide operator they run in any namespace. */}}
{{- define "conveyor.np.workers" -}}
- namespaceSelector:
    {{- if .Values.operator.clusterWide }} {}
    {{- else }}
    matchLabels: {kubernetes.io/metadata.name: {{ .Release.Namespace }}}
    {{- end }}
  podSelector:
    matchLabels:
      conveyor.io/release: {{ .Release.Name | trunc 63 | quote }}
      app.kubernetes.io/component: worker
{{- end -}}

{{/* The port of a URL, or .default. */}}
{{- define "conveyor.np.urlPort" -}}
{{- $host := (urlParse .url).host -}}
{{- $port := regexFind ":[0-9]+$" $host | trimPrefix ":" -}}
{{- $port | default .default -}}
{{- end -}}

{{/* Egress to InfluxDB, for the workers' writes and the gateway's charts: the in-chart one's
pods, or the port of influx.url on any address; nothing when there is no InfluxDB. */}}
{{- define "conveyor.np.influxEgress" -}}
{{- if .Values.influxdb.enabled -}}
- to: {{- include "conveyor.np.component" (dict "root" . "component" "influxdb") | nindent 4 }}
  ports:
    - {port: 8086, protocol: TCP}
{{- else -}}
{{- with .Values.influx.url -}}
- ports:
    - {port: {{ include "conveyor.np.urlPort" (dict "url" . "default" (ternary "443" "80" (hasPrefix "https:" .))) }}, protocol: TCP}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Egress rules every component needs: DNS. */}}
{{- define "conveyor.np.dnsEgress" -}}
- to: {{- toYaml .Values.networkPolicy.dnsPeers | nindent 4 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}

{{/* Egress to Redis: the in-chart one's pods, or the external one's port. */}}
{{- define "conveyor.np.redisEgress" -}}
{{- if .Values.redis.enabled -}}
- to: {{- include "conveyor.np.component" (dict "root" . "component" "redis") | nindent 4 }}
  ports:
    - {port: 6379, protocol: TCP}
{{- else if not (hasPrefix "unix:" .Values.redis.url) -}}
- ports:
    - {port: {{ include "conveyor.np.urlPort" (dict "url" .Values.redis.url "default" "6379") }}, protocol: TCP}
  {{- with .Values.networkPolicy.redisPeers }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* Egress to the API server (the operator, the uninstall hook). */}}
{{- define "conveyor.np.apiServerEgress" -}}
- ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .Values.networkPolicy.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Ingress to the probe and metrics port 8080. Kubelet probes come from the node, which
NetworkPolicies always admit; this is for Prometheus. */}}
{{- define "conveyor.np.metricsIngress" -}}
- ports:
    - {port: 8080, protocol: TCP}
  {{- with .Values.networkPolicy.metricsFrom }}
  from: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* metadata of a NetworkPolicy of component .component. */}}
{{- define "conveyor.np.metadata" -}}
metadata:
  name: {{ include "conveyor.component" . }}
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "conveyor.labels" . | nindent 4 }}
{{- end -}}
