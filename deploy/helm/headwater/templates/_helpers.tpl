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
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
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
- name: HEADWATER_METRICS_PORT
  value: "9400"
- name: HEADWATER_INSTANCE_ID
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- end }}
