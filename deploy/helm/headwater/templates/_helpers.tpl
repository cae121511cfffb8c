{{- define "headwater.fullname" -}}
{{- printf "%s-headwater" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "headwater.labels" -}}
app.kubernetes.io/name: headwater
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "headwater.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}

{{- define "headwater.kafkaBootstrap" -}}
{{- .Values.kafka.bootstrap | default (printf "%s-kafka:9092" (include "headwater.fullname" .)) -}}
{{- end }}

{{- define "headwater.clickhouseHost" -}}
{{- .Values.clickhouse.host | default (printf "%s-clickhouse" (include "headwater.fullname" .)) -}}
{{- end }}

{{- define "headwater.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "headwater.fullname" .)) -}}
{{- end }}

{{/* The environment every Headwater container gets: settings file, Kafka, ClickHouse, secrets. */}}
{{- define "headwater.env" -}}
- name: HEADWATER_CONFIG
  value: /etc/headwater/headwater.toml
- name: HEADWATER_KAFKA_BOOTSTRAP
  value: {{ include "headwater.kafkaBootstrap" . | quote }}
- name: HEADWATER_CLICKHOUSE_HOST
  value: {{ include "headwater.clickhouseHost" . | quote }}
- name: HEADWATER_CLICKHOUSE_PORT
  value: {{ .Values.clickhouse.port | quote }}
- name: HEADWATER_CLICKHOUSE_USER
  value: {{ .Values.clickhouse.user | quote }}
- name: HEADWATER_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "headwater.secretName" . }}, key: clickhouse-password}
- name: HEADWATER_ADMIN_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "headwater.secretName" . }}, key: admin-token}
- name: HEADWATER_COLLECTOR_HOST
  value: "0.0.0.0"
- name: HEADWATER_ADMIN_HOST
  value: "0.0.0.0"
- name: HEADWATER_DASHBOARD_HOST
  value: "0.0.0.0"
- name: HEADWATER_METRICS_PORT
  value: "9400"
- name: HEADWATER_METRICS_HOST
  value: "0.0.0.0"
- name: HEADWATER_INSTANCE_ID
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: HEADWATER_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.security.protocol | quote }}
{{- if hasPrefix "SASL" .Values.kafka.security.protocol }}
- name: HEADWATER_KAFKA_SASL_MECHANISM
  value: {{ required "kafka.security.saslMechanism is required with SASL" .Values.kafka.security.saslMechanism | quote }}
{{- end }}
- name: HEADWATER_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "headwater.secretName" . }}, key: secret-key}
{{- if .Values.kafka.security.caSecret }}
- name: HEADWATER_KAFKA_SSL_CAFILE
  value: /etc/headwater/kafka-ca/ca.crt
{{- end }}
- name: HEADWATER_CLICKHOUSE_SECURE
  value: {{ .Values.clickhouse.secure | quote }}
{{- if .Values.clickhouse.caSecret }}
- name: HEADWATER_CLICKHOUSE_CA_CERTS
  value: /etc/headwater/clickhouse-ca/ca.crt
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes every Headwater pod mounts: the settings file, and the CA bundles when given. */}}
{{- define "headwater.volumes" -}}
- name: settings
  configMap:
    name: {{ include "headwater.fullname" . }}-settings
{{- with .Values.kafka.security.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ . }}}
{{- end }}
{{- with .Values.clickhouse.caSecret }}
- name: clickhouse-ca
  secret: {secretName: {{ . }}}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "headwater.volumeMounts" -}}
- {name: settings, mountPath: /etc/headwater, readOnly: true}
{{- if .Values.kafka.security.caSecret }}
- {name: kafka-ca, mountPath: /etc/headwater/kafka-ca, readOnly: true}
{{- end }}
{{- if .Values.clickhouse.caSecret }}
- {name: clickhouse-ca, mountPath: /etc/headwater/clickhouse-ca, readOnly: true}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod Security "restricted": a pod's and a container's security context. Call the pod's with
     (dict "uid" N); the container's with (dict "readOnlyRoot" true|false). */}}
{{- define "headwater.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "headwater.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnlyRoot }}
capabilities: {drop: [ALL]}
{{- end }}

{{/* Where pods run and how their images are pulled (values: imagePullSecrets, nodeSelector,
     affinity, tolerations), for every pod of the release. */}}
{{- define "headwater.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The Kafka user of a component (headwater/kafka_access.py): the collector its own, the admin API and
     the dashboard "control", every other role "pipeline"; or one user for all (kafka.security.saslUsername,
     for an external cluster). Call with (dict "root" $ "component" NAME). */}}
{{- define "headwater.kafkaUser" -}}
{{- $name := .component -}}
{{- if .root.Values.kafka.security.saslUsername -}}{{ .root.Values.kafka.security.saslUsername }}
{{- else if eq $name "collector" -}}collector
{{- else if has $name (list "admin" "dashboard" "migrate" "projects" "lag-exporter") -}}control
{{- else -}}pipeline
{{- end -}}
{{- end }}

{{- define "headwater.kafkaCredentials" -}}
{{- if hasPrefix "SASL" .root.Values.kafka.security.protocol }}
{{- $user := include "headwater.kafkaUser" . }}
- name: HEADWATER_KAFKA_SASL_USERNAME
  value: {{ $user | quote }}
- name: HEADWATER_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "headwater.secretName" .root }}
      key: {{ if .root.Values.kafka.security.saslUsername }}kafka-password{{ else }}kafka-{{ $user }}-password{{ end }}
{{- end }}
{{- end }}

{{/* GeoIP for a pod that reads it (enrich) or names its licence (the dashboard): the download before
     the pod starts, the refresh beside it, the volume, and where the database is. */}}
{{- define "headwater.geoipContainer" -}}
- name: {{ .name }}
  image: {{ .root.Values.geoip.image | quote }}
  env:
    - {name: GEOIPUPDATE_EDITION_IDS, value: {{ .root.Values.geoip.edition | quote }}}
    - {name: GEOIPUPDATE_DB_DIR, value: /geoip}
    {{- if .refresh }}
    - {name: GEOIPUPDATE_FREQUENCY, value: {{ .root.Values.geoip.frequencyHours | quote }}}
    {{- end }}
    - name: GEOIPUPDATE_ACCOUNT_ID
      valueFrom:
        secretKeyRef: {name: {{ include "headwater.secretName" .root }}, key: geoip-account-id}
    - name: GEOIPUPDATE_LICENSE_KEY
      valueFrom:
        secretKeyRef: {name: {{ include "headwater.secretName" .root }}, key: geoip-license-key}
  resources:
    requests: {cpu: 10m, memory: 32Mi, ephemeral-storage: 64Mi}
    limits: {memory: 128Mi, ephemeral-storage: 256Mi}
  securityContext:
    {{- include "headwater.containerSecurity" (dict "readOnlyRoot" true) | nindent 4 }}
  volumeMounts:
    - {name: geoip, mountPath: /geoip}
    - {name: tmp, mountPath: /tmp}
{{- end }}

{{- define "headwater.geoipPath" -}}
/geoip/{{ .Values.geoip.edition }}.mmdb
{{- end }}
