{{/* A file of deploy/ (files/ links to them), in the release namespace instead of apptopology-system (its
     ServiceAccount's user name too). */}}
{{- define "apptopology.file" -}}
{{- $root := index . 0 -}}
{{- $root.Files.Get (index . 1) | replace "namespace: apptopology-system" (printf "namespace: %s" $root.Release.Namespace) | replace "system:serviceaccount:apptopology-system:" (printf "system:serviceaccount:%s:" $root.Release.Namespace) -}}
{{- end -}}

{{- define "apptopology.labels" -}}
app.kubernetes.io/name: apptopology
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: apptopology
{{- end -}}

{{- define "apptopology.selector" -}}
app.kubernetes.io/name: apptopology
app.kubernetes.io/component: operator
{{- end -}}

{{- define "apptopology.guardrailAdmission" -}}
{{- $enabled := .Values.guardrailAdmission.enabled -}}
{{- if eq (toString $enabled) "auto" -}}
{{- if semverCompare ">=1.35.0-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- else if $enabled -}}true{{- end -}}
{{- end -}}
