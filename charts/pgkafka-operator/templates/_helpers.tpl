{{- define "pgkafka.name" -}}pgkafka-operator{{- end -}}

{{- define "pgkafka.fullname" -}}
{{- if contains "pgkafka-operator" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-pgkafka-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "pgkafka.labels" -}}
app.kubernetes.io/name: {{ include "pgkafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pgkafka.selector" -}}
app.kubernetes.io/name: {{ include "pgkafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgkafka.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "pgkafka.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "pgkafka.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "pgkafka.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/*
Rules the operator needs, and nothing more; each verb is used as said here.
The tests run the operator on exactly these rules against a real API server
and fail on any "forbidden" in its log.
- pgkafkaconnectors: list, watch (the controller's watch); patch (add and
  remove the cleanup finalizer).
- pgkafkaconnectors/status: patch (server-side apply of the status).
- deployments: list, watch (owned objects); create, patch (server-side apply
  creates or updates the engine); delete (cleanup stops the engine before
  the slot is dropped).
- configmaps, services: list, watch (owned objects); create, patch
  (server-side apply).
- serviceaccounts: create, patch (server-side apply of the engine's
  ServiceAccount; not watched).
- secrets: get (read the referenced keys); list, watch (a changed Secret
  rolls the engine). Never create, patch or delete.
- events.k8s.io events: create, patch (an Event per condition change;
  repeats are patched).
- discovery.k8s.io endpointslices: list, watch (the engines' pod addresses,
  so their /status is read without cluster DNS).
*/}}
{{- define "pgkafka.rules" -}}
- apiGroups: ["pgkafka.io"]
  resources: ["pgkafkaconnectors"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["pgkafka.io"]
  resources: ["pgkafkaconnectors/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
{{- end -}}
