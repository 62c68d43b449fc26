{{/*
Names
*/}}
{{- define "warren.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "warren.fullname" -}}
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

{{/* <fullname>-<suffix>, within 63 characters. */}}
{{- define "warren.componentName" -}}
{{- printf "%s-%s" (include "warren.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "warren.api.fullname" -}}
{{- include "warren.componentName" (dict "root" . "suffix" "api") }}
{{- end }}

{{- define "warren.worker.fullname" -}}
{{- include "warren.componentName" (dict "root" . "suffix" "worker") }}
{{- end }}

{{- define "warren.api.serviceName" -}}
{{- default (include "warren.api.fullname" .) .Values.api.service.name }}
{{- end }}

{{/* The base of the pools' headless Service names: worker.service.name, else
<fullname>-worker. Each pool's Service is <base>-<pool>. */}}
{{- define "warren.worker.serviceBase" -}}
{{- default (include "warren.worker.fullname" .) .Values.worker.service.name }}
{{- end }}

{{- define "warren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "warren.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "warren.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Call the component variants with (dict "root" $ "component" "api").
*/}}
{{- define "warren.labels" -}}
helm.sh/chart: {{ include "warren.chart" . }}
{{ include "warren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: warren
{{- end }}

{{- define "warren.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warren.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "warren.componentLabels" -}}
{{ include "warren.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "warren.componentSelectorLabels" -}}
{{ include "warren.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Image reference of a component: (dict "root" $ "image" .Values.api.image).
*/}}
{{- define "warren.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Secret: which one, and what it holds.
*/}}
{{- define "warren.secretName" -}}
{{- default (include "warren.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{- define "warren.amqpUrlKey" -}}
{{- if .Values.existingSecret.name }}{{ required "existingSecret.amqpUrlKey is required with existingSecret.name" .Values.existingSecret.amqpUrlKey }}{{ else }}AMQP_URL{{ end }}
{{- end }}

{{/* The key of MANAGEMENT_URL in the Secret; empty when there is no management URL. */}}
{{- define "warren.managementUrlKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.managementUrlKey }}{{ else if .Values.management.url }}MANAGEMENT_URL{{ end }}
{{- end }}

{{/* The key of REDIS_URL in the Secret; empty when there is no Redis (bbolt job store). */}}
{{- define "warren.redisUrlKey" -}}
{{- if .Values.existingSecret.name }}{{ .Values.existingSecret.redisUrlKey }}{{ else if .Values.redis.url }}REDIS_URL{{ end }}
{{- end }}

{{/*
Environment variables. The binaries' tables (pkg/config.Vars): the variables each
one reads, and the ones the chart sets itself. internal/deploycheck/helm_test.go
renders every variable of the table through api.config / worker.config, so a
variable added to the code but not here fails the test.
*/}}
{{- define "warren.vars.api" -}}
AMQP_URL MANAGEMENT_URL HTTP_ADDR REQUEST_TIMEOUT MAX_REQUEST_TIMEOUT BODY_LIMIT QUEUE_MAX_LENGTH REQUEST_QUEUE_TYPE AMQP_HEARTBEAT DRAIN_TIMEOUT DEFAULT_MODEL ADMIN_API LOG_LEVEL LOG_FORMAT SCALE_TARGET_UTILIZATION SCALE_TARGET_WAIT DATA_DIR REDIS_URL REDIS_PREFIX JOB_TTL JOB_START_TIMEOUT MAX_WAIT OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL OTEL_TRACES_SAMPLER_ARG OTEL_SERVICE_NAME AUTH API_KEYS_FILE API_KEYS_INIT OIDC_ISSUER OIDC_AUDIENCE OIDC_JWKS_URL OIDC_ROLES_CLAIM AMQP_CA_FILE AMQP_CERT_FILE AMQP_KEY_FILE AMQP_SERVER_NAME TLS_CERT_FILE TLS_KEY_FILE REDIS_CA_FILE REDIS_CERT_FILE REDIS_KEY_FILE RATE_LIMIT RATE_BURST CALLER_CONCURRENCY QUOTA_LEASE_TTL
{{- end }}

{{- define "warren.vars.worker" -}}
AMQP_URL AMQP_HEARTBEAT REQUEST_QUEUE_TYPE HTTP_ADDR BODY_LIMIT CONCURRENCY PREFETCH DRAIN_TIMEOUT MODEL_REPOSITORY MODELS MODEL_SEED MODEL_LATENCY WORKER_ID LOG_LEVEL LOG_FORMAT JOB_CONCURRENCY JOB_MAX_ATTEMPTS JOB_RETRY_BACKOFF JOB_RETRY_BACKOFF_MAX JOB_RUN_TIMEOUT OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL OTEL_TRACES_SAMPLER_ARG OTEL_SERVICE_NAME AMQP_CA_FILE AMQP_CERT_FILE AMQP_KEY_FILE AMQP_SERVER_NAME TLS_CERT_FILE TLS_KEY_FILE
{{- end }}

{{- define "warren.vars.managed" -}}
AMQP_URL: amqp.url or existingSecret
MANAGEMENT_URL: management.url or existingSecret
REDIS_URL: redis.url or existingSecret
DRAIN_TIMEOUT: <component>.drainTimeoutSeconds
HTTP_ADDR: the chart (port 8000 for the api, 8001 for the worker)
DATA_DIR: the chart (/data, the api's volume)
WORKER_ID: the chart (the pod name)
MODELS: workerPools[].models (one worker Deployment per pool)
AUTH: auth.mode (none sets AUTH=none)
API_KEYS_FILE: auth.mode (the keys file mounted from a Secret)
TLS_CERT_FILE: tls.http.secretName
TLS_KEY_FILE: tls.http.secretName
AMQP_CA_FILE: tls.amqp.secretName
AMQP_CERT_FILE: tls.amqp.secretName with tls.amqp.clientCertificate
AMQP_KEY_FILE: tls.amqp.secretName with tls.amqp.clientCertificate
REDIS_CA_FILE: tls.redis.secretName
REDIS_CERT_FILE: tls.redis.secretName with tls.redis.clientCertificate
REDIS_KEY_FILE: tls.redis.secretName with tls.redis.clientCertificate
{{- end }}

{{/* The Secret holding the keys file, and its key; empty with auth.mode none. */}}
{{- define "warren.apiKeysSecret" -}}
{{- if eq .Values.auth.mode "generate" }}{{ include "warren.api.fullname" . }}-keys
{{- else if eq .Values.auth.mode "existingSecret" }}{{ required "auth.existingSecret.name is required with auth.mode existingSecret" .Values.auth.existingSecret.name }}
{{- else if ne .Values.auth.mode "none" }}{{ fail (printf "auth.mode %q: want generate, existingSecret or none" .Values.auth.mode) }}
{{- end }}
{{- end }}

{{- define "warren.apiKeysKey" -}}
{{- if eq .Values.auth.mode "existingSecret" }}{{ .Values.auth.existingSecret.key }}{{ else }}api-keys.yaml{{ end }}
{{- end }}

{{/*
Encrypted links: the Secrets of tls.* mounted read-only under /etc/warren/tls and
the variables naming their files. (dict "root" $ "binary" "api"); Redis is the
API's only, and the helm test pod ("binary" "test") gets only the HTTP pair. Each define prints list items (or nothing), to be nindented.
*/}}
{{- define "warren.tls.links" -}}
{{- $t := .root.Values.tls }}
{{- $links := list }}
{{- if $t.http.secretName }}
{{- $links = append $links (dict "name" "http" "secret" $t.http.secretName "vars" (dict "TLS_CERT_FILE" "tls.crt" "TLS_KEY_FILE" "tls.key")) }}
{{- end }}
{{- if and (ne .binary "test") $t.amqp.secretName }}
{{- $vars := dict "AMQP_CA_FILE" "ca.crt" }}
{{- if $t.amqp.clientCertificate }}
{{- $_ := set $vars "AMQP_CERT_FILE" "tls.crt" }}
{{- $_ := set $vars "AMQP_KEY_FILE" "tls.key" }}
{{- end }}
{{- $links = append $links (dict "name" "amqp" "secret" $t.amqp.secretName "vars" $vars) }}
{{- end }}
{{- if and (eq .binary "api") $t.redis.secretName }}
{{- $vars := dict "REDIS_CA_FILE" "ca.crt" }}
{{- if $t.redis.clientCertificate }}
{{- $_ := set $vars "REDIS_CERT_FILE" "tls.crt" }}
{{- $_ := set $vars "REDIS_KEY_FILE" "tls.key" }}
{{- end }}
{{- $links = append $links (dict "name" "redis" "secret" $t.redis.secretName "vars" $vars) }}
{{- end }}
{{- dict "links" $links | toJson }}
{{- end }}

{{- define "warren.tls.env" -}}
{{- range (include "warren.tls.links" . | fromJson).links }}
{{- $name := .name }}
{{- range $k, $file := .vars }}
- name: {{ $k }}
  value: {{ printf "/etc/warren/tls/%s/%s" $name $file | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "warren.tls.mounts" -}}
{{- range (include "warren.tls.links" . | fromJson).links }}
- name: tls-{{ .name }}
  mountPath: /etc/warren/tls/{{ .name }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "warren.tls.volumes" -}}
{{- range (include "warren.tls.links" . | fromJson).links }}
- name: tls-{{ .name }}
  secret:
    secretName: {{ .secret | quote }}
{{- end }}
{{- end }}

{{/* HTTP or HTTPS: the probes' scheme. */}}
{{- define "warren.probeScheme" -}}
{{- if .Values.tls.http.secretName }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
A config value as the string the binary parses: whole numbers that YAML or --set
made floats are printed without an exponent (1000000, not 1e+06).
*/}}
{{- define "warren.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
The ConfigMap data of a component: (dict "root" $ "binary" "api" "config" .Values.api.config),
optionally "where" (the values key named in messages; default the binary). Fails on
a variable the binary does not read and on a chart-managed one.
*/}}
{{- define "warren.configData" -}}
{{- $where := default .binary .where }}
{{- $known := splitList " " (include (printf "warren.vars.%s" .binary) .root) }}
{{- $managed := include "warren.vars.managed" .root | fromYaml }}
{{- range $k, $v := .config }}
{{- if not (has $k $known) }}
{{- fail (printf "%s.config.%s: the %s binary does not read %s (see `/%s config`)" $where $k $.binary $k $.binary) }}
{{- end }}
{{- if hasKey $managed $k }}
{{- fail (printf "%s.config.%s: set by the chart from %s" $where $k (get $managed $k | replace "<component>" $.binary)) }}
{{- end }}
{{- if kindIs "invalid" $v }}
{{- fail (printf "%s.config.%s: null; remove the key to keep the default" $where $k) }}
{{- end }}
{{ $k }}: {{ include "warren.envValue" $v | quote }}
{{- end }}
{{- end }}

{{/*
Drain and grace: (dict "root" $ "c" .Values.api "component" "api" "preStop" 5).
warren.grace prints terminationGracePeriodSeconds and fails when it leaves the
drain no room.
*/}}
{{- define "warren.grace" -}}
{{- $drain := int .c.drainTimeoutSeconds }}
{{- $pre := int .preStop }}
{{- if lt $drain 1 }}
{{- fail (printf "%s.drainTimeoutSeconds must be at least 1" .component) }}
{{- end }}
{{- if kindIs "invalid" .c.terminationGracePeriodSeconds }}
{{- add $pre $drain 10 }}
{{- else }}
{{- $grace := int .c.terminationGracePeriodSeconds }}
{{- if le $grace (add $pre $drain) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be larger than %s.drainTimeoutSeconds (%d) + preStop sleep (%d): the kubelet would kill the pod before its drain ends" .component $grace .component $drain $pre) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
Model names and queue names, as pkg/queue has them (internal/deploycheck compares
them with queue.ModelNamePattern, queue.RequestQueuePrefix and queue.JobQueuePrefix):
a model version's queues are <prefix><model>.v<version>.
*/}}
{{- define "warren.modelNamePattern" -}}
^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$
{{- end }}

{{- define "warren.requestQueuePrefix" -}}
warren.req.
{{- end }}

{{- define "warren.jobQueuePrefix" -}}
warren.job.
{{- end }}

{{/* A regex matching every version's queue of a model: (dict "prefix" "warren.req." "model" "seed"). */}}
{{- define "warren.queueRegex" -}}
{{- printf "^%s%s\\.v[0-9]+$" (.prefix | replace "." "\\.") .model }}
{{- end }}

{{/*
The worker pools (workerPools), validated and resolved, as JSON {"pools": [...]}:
each pool with its name, models, Deployment/Service names, replicas, config
(worker.config, then the pool's own keys), resources and scheduling, and
autoscaling (worker.autoscaling, then the pool's own keys; rabbitmq and jobs key
by key). Use: (include "warren.workerPools" . | fromJson).pools
*/}}
{{- define "warren.workerPools" -}}
{{- $root := . }}
{{- $pattern := include "warren.modelNamePattern" . }}
{{- if not .Values.workerPools }}
{{- fail "workerPools is empty: list at least one pool, e.g. {name: seed, models: [seed]} (one worker Deployment per pool)" }}
{{- end }}
{{- /* worker.config once, named as such in messages. */}}
{{- $_ := include "warren.configData" (dict "root" . "binary" "worker" "config" .Values.worker.config) }}
{{- $names := dict }}
{{- $owner := dict }}
{{- $pools := list }}
{{- range $i, $p := .Values.workerPools }}
{{- $where := printf "workerPools[%d]" $i }}
{{- if not $p.name }}
{{- fail (printf "%s: no name (a lowercase DNS label of at most 30 characters, e.g. seed)" $where) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$" (toString $p.name)) }}
{{- fail (printf "%s.name %q: want a lowercase DNS label of at most 30 characters (letters, digits, '-'), e.g. seed: it names the pool's Deployment, Service and ScaledObject" $where (toString $p.name)) }}
{{- end }}
{{- $where = printf "workerPools[%d] (%s)" $i $p.name }}
{{- if hasKey $names $p.name }}
{{- fail (printf "workerPools: the pool name %q is used twice (%s and workerPools[%d]): a pool's name names its Deployment, Service and ScaledObject" $p.name (get $names $p.name) $i) }}
{{- end }}
{{- $_ := set $names $p.name (printf "workerPools[%d]" $i) }}
{{- if not $p.models }}
{{- fail (printf "%s: models is empty: list the models the pool serves (its MODELS). An empty MODELS would load every model of the image, overlapping the other pools" $where) }}
{{- end }}
{{- range $m := $p.models }}
{{- if not (regexMatch $pattern (toString $m)) }}
{{- fail (printf "%s: model %q is not a valid model name: want 1-64 letters, digits, '_' or '-', starting with a letter or digit (no dots: they separate the parts of queue names)" $where (toString $m)) }}
{{- end }}
{{- if hasKey $owner $m }}
{{- fail (printf "%s: model %q is also served by %s: each model's queues belong to one pool (two pools scaled on the same model's estimate would each scale to all of it)" $where $m (get $owner $m)) }}
{{- end }}
{{- $_ := set $owner $m $where }}
{{- end }}
{{- $pc := $p.config | default dict }}
{{- $_ := include "warren.configData" (dict "root" $root "binary" "worker" "config" $pc "where" $where) }}
{{- $config := merge (deepCopy $pc) (deepCopy $root.Values.worker.config) }}
{{- /* autoscaling: the pool's keys over worker.autoscaling; rabbitmq and jobs key by key. */}}
{{- $as := deepCopy $root.Values.worker.autoscaling }}
{{- range $k, $v := ($p.autoscaling | default dict) }}
{{- if and (has $k (list "rabbitmq" "jobs")) (kindIs "map" $v) }}
{{- $sub := deepCopy (get $as $k | default dict) }}
{{- range $k2, $v2 := $v }}
{{- $_ := set $sub $k2 $v2 }}
{{- end }}
{{- $_ := set $as $k $sub }}
{{- else }}
{{- $_ := set $as $k $v }}
{{- end }}
{{- end }}
{{- $replicas := $root.Values.worker.replicaCount }}
{{- if hasKey $p "replicas" }}{{ $replicas = $p.replicas }}{{ end }}
{{- $pool := dict
    "name" $p.name
    "where" $where
    "models" $p.models
    "fullname" (include "warren.componentName" (dict "root" $root "suffix" (printf "worker-%s" $p.name)))
    "serviceName" (printf "%s-%s" (include "warren.worker.serviceBase" $root | trunc (int (sub 62 (len $p.name))) | trimSuffix "-") $p.name)
    "replicas" $replicas
    "config" $config
    "autoscaling" $as
    "resources" ($p.resources | default $root.Values.worker.resources)
    "nodeSelector" ($p.nodeSelector | default $root.Values.worker.nodeSelector)
    "tolerations" ($p.tolerations | default $root.Values.worker.tolerations)
    "affinity" ($p.affinity | default $root.Values.worker.affinity) }}
{{- $pools = append $pools $pool }}
{{- end }}
{{- dict "pools" $pools | toJson }}
{{- end }}

{{/* Pod labels of a pool's workers: (dict "root" $ "pool" $pool). */}}
{{- define "warren.poolSelectorLabels" -}}
{{ include "warren.componentSelectorLabels" (dict "root" .root "component" "worker") }}
warren/pool: {{ .pool.name }}
{{- end }}

{{- define "warren.poolLabels" -}}
{{ include "warren.componentLabels" (dict "root" .root "component" "worker") }}
warren/pool: {{ .pool.name }}
{{- end }}

{{/* A pool's handler slots: its CONCURRENCY, else the binary's default (4). */}}
{{- define "warren.poolSlots" -}}
{{- include "warren.envValue" (get .config "CONCURRENCY" | default "4") }}
{{- end }}

{{/* A pool's job slots: its JOB_CONCURRENCY, else the binary's default (1). */}}
{{- define "warren.poolJobSlots" -}}
{{- include "warren.envValue" (get .config "JOB_CONCURRENCY" | default "1") }}
{{- end }}

{{/* The RabbitMQ vhost for the KEDA rabbitmq triggers. */}}
{{- define "warren.vhost" -}}
{{- if .Values.worker.autoscaling.rabbitmq.vhostName }}
{{- .Values.worker.autoscaling.rabbitmq.vhostName }}
{{- else if and .Values.amqp.url (not .Values.existingSecret.name) }}
{{- /* AMQP_URL may list a cluster's nodes, comma-separated: they share the vhost. */}}
{{- $p := trimPrefix "/" (get (urlParse (first (splitList "," .Values.amqp.url) | trim)) "path") }}
{{- default "/" $p }}
{{- else }}
{{- "/" }}
{{- end }}
{{- end }}

{{/* URL of the API's capacity endpoint, as KEDA (in another namespace) reaches it. */}}
{{- define "warren.capacityURL" -}}
{{- if .Values.tls.http.secretName }}
{{- fail "tls.http.secretName: the capacity KEDA trigger polls the API's /capacity, and KEDA would have to trust the API's certificate: with HTTPS listeners use trigger rabbitmq for the pools (worker.autoscaling.trigger), or worker.autoscaling.enabled=false" }}
{{- end }}
{{- printf "http://%s.%s.svc:%d/capacity" (include "warren.api.serviceName" .) .Release.Namespace (int .Values.api.service.port) }}
{{- end }}

{{/* Is any KEDA rabbitmq trigger in use (and with it the TriggerAuthentication)? */}}
{{- define "warren.rabbitmqTriggers" -}}
{{- range (include "warren.workerPools" . | fromJson).pools }}
{{- with .autoscaling }}
{{- if and .enabled (or (eq .trigger "rabbitmq") .jobs.enabled) }}true{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks across values that a schema cannot express. Included by validate.yaml.
*/}}
{{- define "warren.validate" -}}
{{- $redis := include "warren.redisUrlKey" . }}
{{- $mgmt := include "warren.managementUrlKey" . }}
{{- if not .Values.existingSecret.name }}
{{- if not .Values.amqp.url }}
{{- fail "amqp.url is required (AMQP_URL, e.g. amqp://user:pass@rabbitmq:5672/vhost), or set existingSecret.name" }}
{{- end }}
{{- end }}
{{- if not $redis }}
{{- if gt (int .Values.api.replicaCount) 1 }}
{{- fail (printf "api.replicaCount=%d needs Redis (redis.url or existingSecret.redisUrlKey): without REDIS_URL the API keeps jobs in a bbolt file that only one process can open" (int .Values.api.replicaCount)) }}
{{- end }}
{{- if .Values.api.autoscaling.enabled }}
{{- fail "api.autoscaling.enabled needs Redis (redis.url or existingSecret.redisUrlKey): without REDIS_URL the API keeps jobs in a bbolt file that only one process can open, so it must stay at one replica" }}
{{- end }}
{{- end }}
{{- if lt (int .Values.api.replicaCount) 1 }}
{{- fail "api.replicaCount must be at least 1" }}
{{- end }}
{{- range $pool := (include "warren.workerPools" . | fromJson).pools }}
{{- with $pool.autoscaling }}
{{- if .enabled }}
{{- $w := printf "%s: autoscaling" $pool.where }}
{{- if not (has .trigger (list "capacity" "rabbitmq")) }}
{{- fail (printf "%s.trigger must be capacity or rabbitmq, not %q" $w .trigger) }}
{{- end }}
{{- if not $mgmt }}
{{- fail (printf "%s needs the RabbitMQ management API (management.url or existingSecret.managementUrlKey): the capacity estimate reads the request queues' publish rate and depth from it, and the rabbitmq trigger reads the queues through it. Set it, or worker.autoscaling.enabled=false" $w) }}
{{- end }}
{{- if lt (int .minReplicaCount) 0 }}
{{- fail (printf "%s.minReplicaCount must not be negative" $w) }}
{{- end }}
{{- if and (eq (int .minReplicaCount) 0) (ne .trigger "capacity") }}
{{- fail (printf "%s.minReplicaCount=0 needs trigger: capacity. With no worker the API answers 503 no_workers without publishing, so the request queues stay empty and a queue-length trigger never wakes the pool; the capacity estimate counts those turned-away calls" $w) }}
{{- end }}
{{- if lt (int .maxReplicaCount) (max 1 (int .minReplicaCount) | int) }}
{{- fail (printf "%s.maxReplicaCount must be at least 1 and at least minReplicaCount" $w) }}
{{- end }}
{{- if and .jobs.enabled (eq (include "warren.poolJobSlots" $pool) "0") (not .jobs.value) }}
{{- fail (printf "%s.jobs.enabled with JOB_CONCURRENCY=0: the pool's workers run no jobs" $w) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $c := list "api" "worker" }}
{{- $pdb := (get $.Values $c).pdb }}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail (printf "%s.pdb: set either minAvailable or maxUnavailable, not both (null the other)" $c) }}
{{- end }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail (printf "%s.pdb: set minAvailable or maxUnavailable" $c) }}
{{- end }}
{{- end }}
{{- end }}
