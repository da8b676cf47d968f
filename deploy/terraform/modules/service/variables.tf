variable "name" {
  type        = string
  description = "Service name as in the topology (e.g. trainer); also the Cloud Run service's name, hence K_SERVICE."
}

variable "project" {
  type = string
}

variable "region" {
  type = string
}

variable "project_number" {
  type        = string
  description = "The project's number, part of the service's deterministic URL (the push audience)."
}

variable "image" {
  type        = string
  description = "Container image, by tag or digest (deploy/cloudbuild/<name>.yaml pushes it)."
}

variable "code_version" {
  type        = string
  description = "Git commit of the image (MLOPS_CODE_VERSION), recorded in lineage; empty leaves the default."
  default     = ""
}

# ---------------------------------------------------------------- wiring, from the shared topology

variable "consumes" {
  type        = list(string)
  description = "Topics this service gets pushed: one push subscription each."
}

variable "publishes" {
  type        = list(string)
  description = "Topics this service publishes to (pubsub.publisher on each)."
}

variable "topic_ids" {
  type        = map(string)
  description = "Topic name -> id, every topic of the topology and the dead-letter topic."
}

variable "dead_letter_topic" {
  type        = string
  description = "Name of the dead-letter topic: Pub/Sub parks undeliverable pushes there, and the service parks poison messages itself."
}

variable "failure_topic" {
  type        = string
  description = "Topic every service reports its failures on."
  default     = "stage.failed.v1"
}

variable "delivery" {
  type = object({
    min_backoff_s         = number
    max_backoff_s         = number
    max_delivery_attempts = number
    ack_deadline_s        = number
  })
  description = "Retry and dead-letter policy of the push subscriptions (the topology's `delivery`)."
}

variable "pubsub_service_agent" {
  type        = string
  description = "IAM member of the project's Pub/Sub service agent (serviceAccount:service-<number>@gcp-sa-pubsub...)."
}

# ---------------------------------------------------------------- what it may touch (least privilege)

variable "project_roles" {
  type        = list(string)
  description = "Project-level roles of the service's own account, e.g. roles/bigquery.jobUser, roles/aiplatform.user."
  default     = []
}

variable "dataset_roles" {
  type        = map(string)
  description = "BigQuery dataset id -> role of the service's account on it (roles/bigquery.dataViewer or dataEditor)."
  default     = {}
}

variable "bucket" {
  type        = string
  description = "The bucket of artifacts, specs and manifests (MLOPS_BUCKET)."
}

variable "bucket_role" {
  type        = string
  description = "Role on the bucket (roles/storage.objectViewer or roles/storage.objectUser); null for none."
  default     = null
}

variable "invoker_members" {
  type        = list(string)
  description = "Who else may call the service (run.invoker), e.g. the dashboard's users; never needed for pushes."
  default     = []
}

# ---------------------------------------------------------------- Cloud Run

variable "env" {
  type        = map(string)
  description = "Environment variables besides MLOPS_PROJECT, MLOPS_LOCATION, MLOPS_BUCKET, MLOPS_DEAD_LETTER_TOPIC, MLOPS_METRICS_SINK and MLOPS_CODE_VERSION."
  default     = {}
}

variable "metrics_sink" {
  type        = string
  description = "MLOPS_METRICS_SINK: cloud-monitoring (the images carry the [monitoring] extra) or local (JSON log lines)."
  default     = "cloud-monitoring"
}

variable "min_instances" {
  type    = number
  default = 0
}

variable "max_instances" {
  type    = number
  default = 3
}

variable "concurrency" {
  type        = number
  description = "Requests per instance; match gunicorn's threads (8)."
  default     = 8
}

variable "cpu" {
  type    = string
  default = "1"
}

variable "memory" {
  type    = string
  default = "1Gi"
}

variable "request_timeout_s" {
  type        = number
  description = "Longest request; a push may take as long as the subscription's ack deadline."
  default     = 600
}

variable "ingress" {
  type        = string
  description = "INGRESS_TRAFFIC_INTERNAL_ONLY suits push-only services (Pub/Sub in the same project counts as internal); a service users reach takes INGRESS_TRAFFIC_ALL."
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse `terraform destroy` of the Cloud Run service."
  default     = false
}
