{{/* Chart name. */}}
{{- define "authplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, plus the chart name unless it already contains it. */}}
{{- define "authplane.fullname" -}}
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

{{/* Name of the operator's objects (Deployment, ServiceAccount, RBAC). */}}
{{- define "authplane.operator" -}}
{{- printf "%s-operator" (include "authplane.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "authplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "authplane.operator" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "authplane.leaseName" -}}
{{- default (include "authplane.operator" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The namespace the operator watches and reconciles in ("" = all). */}}
{{- define "authplane.watchNamespace" -}}
{{- .Values.watchNamespace -}}
{{- end -}}

{{- define "authplane.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. Not app=authplane: that label is the servers' pods'. */}}
{{- define "authplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "authplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: authplane
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of the operator's objects. */}}
{{- define "authplane.operatorLabels" -}}
{{ include "authplane.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Selector of the operator's pods (stable across upgrades). */}}
{{- define "authplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Custom resource metadata and spec from a values entry: {name, labels,
annotations, spec}. authServerRef defaults to authServer.name.
*/}}
{{- define "authplane.crMeta" -}}
{{- $root := index . 0 -}}
{{- $item := index . 1 -}}
name: {{ $item.name }}
namespace: {{ $root.Release.Namespace }}
labels:
  {{- include "authplane.labels" $root | nindent 2 }}
  {{- with $item.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $item.annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "authplane.refSpec" -}}
{{- $root := index . 0 -}}
{{- $spec := deepCopy (default dict (index . 1)) -}}
{{- if not $spec.authServerRef -}}
{{- $_ := set $spec "authServerRef" (dict "name" $root.Values.authServer.name) -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* Whether the ServiceMonitor CRD exists: `get` on that one CRD only. */}}
{{- define "authplane.crdRule" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames: [servicemonitors.monitoring.coreos.com]
  verbs: [get]
{{- end -}}

{{/* What the reconcilers do, in the watched namespace(s): read the three
kinds, write their status (server-side apply), own Secrets, Services and
Deployments (server-side apply: create + patch; never delete: owner
references let the garbage collector do that), publish Events. */}}
{{- define "authplane.reconcileRules" -}}
- apiGroups: [authplane.io]
  resources: [authservers, protectedresources, oauthclients]
  verbs: [get, list, watch]
- apiGroups: [authplane.io]
  resources: [authservers/status, protectedresources/status, oauthclients/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: [authplane.io]
  resources: [authservers/finalizers, protectedresources/finalizers, oauthclients/finalizers]
  verbs: [update]
# Secrets are written whole (update), so that a hand-added or corrupt key is
# removed: server-side apply never prunes a field another manager owns.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.rbac.serviceMonitors }}
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, create, patch, delete]
{{- end }}
{{- end -}}
