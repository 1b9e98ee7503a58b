{{/* Chart name, or nameOverride. */}}
{{- define "oss-encryption-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of every namespaced object and prefix of the cluster-scoped ones: fullnameOverride, or
the release name joined with the chart name (once if the release name already contains it). */}}
{{- define "oss-encryption-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "oss-encryption-operator.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "oss-encryption-operator.fullname" .) }}
{{- end }}

{{/* Labels that select the operator's pods (never change these after install). */}}
{{- define "oss-encryption-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oss-encryption-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The standard labels, on every object the chart renders. */}}
{{- define "oss-encryption-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "oss-encryption-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: oss-encryption-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image: by digest when image.digest is set (the tag is then ignored), else by tag
(default: the chart's appVersion). */}}
{{- define "oss-encryption-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* A number as the binary parses it: whole numbers as integers (YAML values arrive as float64,
which Go would print as 1e+06), fractions as they are. */}}
{{- define "oss-encryption-operator.number" -}}
{{- if eq (float64 (int64 .)) (float64 .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* The seconds in a duration the schema's `duration` pattern accepted, summed as the binary's
api::parse_duration does (a number and a unit, repeated; ms is read before m). */}}
{{- define "oss-encryption-operator.seconds" -}}
{{- $scale := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ms|h|m|s)" (toString .) -1 }}
{{- $number := regexFind "^[0-9.]+" . }}
{{- $total = addf $total (mulf (float64 $number) (get $scale (trimPrefix $number .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* Render-time checks: a combination that cannot work fails the install with the reason. */}}
{{- define "oss-encryption-operator.validate" -}}
{{- if and (gt (int64 .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas: %d needs leaderElection.enabled: true (without it every replica reconciles and they write over each other); set replicas: 1 or enable leader election" (int64 .Values.replicas)) }}
{{- end }}
{{- $resync := float64 (include "oss-encryption-operator.seconds" .Values.resyncInterval) }}
{{- if or (lt $resync 30.0) (gt $resync 86400.0) }}
{{- fail (printf "resyncInterval: %s is outside the binary's bounds for --resync-interval, 30s to 24h" .Values.resyncInterval) }}
{{- end }}
{{- if gt (float64 (include "oss-encryption-operator.seconds" .Values.kms.cacheTTL)) 86400.0 }}
{{- fail (printf "kms.cacheTTL: %s is longer than the binary's maximum for --kms-cache-ttl, 24h" .Values.kms.cacheTTL) }}
{{- end }}
{{- $chartFlags := list "run" "--log-format" "--metrics-addr" "--oss-qps" "--oss-burst" "--oss-qps-mode" "--kms-preflight" "--kms-network" "--kms-cache-ttl" "--kms-qps" "--audit-concurrency" "--audit-qps" "--audit-burst" "--enable-policies" "--concurrency" "--resync-interval" "--allow-operator-credentials" "--allowed-endpoint-suffixes" "--namespace" "--label-selector" "--leader-election" "--leader-election-lease" }}
{{- range .Values.extraArgs }}
{{- $flag := first (splitList "=" (toString .)) }}
{{- if has $flag $chartFlags }}
{{- fail (printf "extraArgs repeats %s, which the chart already sets: use its value instead (see the chart README)" $flag) }}
{{- end }}
{{- end }}
{{- if .Values.rrsa.roleName }}
{{- $namespace := lookup "v1" "Namespace" "" .Release.Namespace }}
{{- if $namespace }}
{{- $labels := $namespace.metadata.labels | default dict }}
{{- if ne (get $labels "pod-identity.alibabacloud.com/injection") "on" }}
{{- fail (printf "rrsa.roleName is set but namespace %s lacks the label pod-identity.alibabacloud.com/injection=on, so ack-pod-identity-webhook would never inject the role: run `kubectl label namespace %s pod-identity.alibabacloud.com/injection=on` and install again" .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
