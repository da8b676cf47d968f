# ---------------------------------------------------------------- set by the team

variable "project" {
  type        = string
  description = "Google Cloud project id."
}

variable "region" {
  type        = string
  description = "Region of the bucket, the Artifact Registry repository and the Cloud Scheduler jobs (the services pick theirs)."
  default     = "us-central1"
}

variable "dataset" {
  type        = string
  description = "BigQuery dataset of sources, predictions, labels, snapshots records and events (MLOPS_DATASET)."
  default     = "mlops"
}

variable "snapshot_dataset" {
  type        = string
  description = "BigQuery dataset of immutable training snapshots (MLOPS_SNAPSHOT_DATASET)."
  default     = "mlops_snapshots"
}

variable "dataset_location" {
  type        = string
  description = "Location of both datasets (a multi-region such as US, or a region)."
  default     = "US"
}

variable "bucket" {
  type        = string
  description = "Bucket for artifacts, pipeline specs and deployment manifests (MLOPS_BUCKET); null means <project>-mlops."
  default     = null
}

variable "repository" {
  type        = string
  description = "Artifact Registry Docker repository the Cloud Build files push to (their _REPOSITORY)."
  default     = "mlops"
}

variable "pipelines" {
  type = map(object({
    schedule  = string
    time_zone = optional(string, "Etc/UTC")
  }))
  description = <<-EOT
    Pipelines ticked by Cloud Scheduler: name -> cron schedule. One job per pipeline publishes a
    watch.tick to the data-watcher; the push decoder takes each tick's ce-id, ce-time and run_id from
    the Pub/Sub message (see deploy/README.md, "Scheduled ticks").
  EOT
  default     = {}
}

variable "protect_data" {
  type        = bool
  description = "Refuse to destroy the tables and a non-empty bucket (turn off only for throwaway projects)."
  default     = true
}

variable "source_repository" {
  type        = string
  description = "Cloud Build repository (2nd gen) the triggers build from: projects/<p>/locations/<region>/connections/<c>/repositories/<r>; null makes no triggers."
  default     = null
}

variable "source_branch" {
  type        = string
  description = "Branch (a regular expression) whose pushes run the triggers."
  default     = "^main$"
}

variable "state_bucket" {
  type        = string
  description = "Bucket of the Terraform state (this module's under mlops/topology): the triggers' _STATE_BUCKET. Required with source_repository."
  default     = null
}

variable "build_service_account" {
  type        = string
  description = "Email of the account the triggers build and deploy as (see deploy/README.md for its roles); null uses Cloud Build's default."
  default     = null
}

variable "notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) the alert policies notify; empty: the incidents only show in the console."
  default     = []
}

variable "alert_thresholds" {
  type = object({
    oldest_unacked_age_s = optional(number, 1800)
    stage_failed_per_5m  = optional(number, 3)
    no_data_s            = optional(number, 7200)
  })
  description = "Oldest unacked message age per subscription, stage.failed count per service in 5 minutes, and how long without a monitoring_value per pipeline, before an alert opens."
  default     = {}
}

# ---------------------------------------------------------------- topology.auto.tfvars.json
# Rendered by `mlops topology --tfvars` from shared/mlops/topology.py; do not edit by hand
# (tests/contract checks the committed file is current).

variable "topics" {
  type        = list(string)
  description = "Event topics, one Avro schema each (schemas/<topic>.avsc)."
}

variable "dead_letter_topic" {
  type        = string
  description = "Topic where poison messages are parked."
}

variable "services" {
  type = map(object({
    consumes       = list(string)
    publishes      = list(string)
    serves_traffic = bool
  }))
  description = "Which service consumes and publishes which topics."
}

variable "delivery" {
  type = object({
    min_backoff_s         = number
    max_backoff_s         = number
    max_delivery_attempts = number
    ack_deadline_s        = number
  })
  description = "Retry and dead-letter policy of every push subscription."
}

variable "tables" {
  type = map(list(object({
    name = string
    type = string
    mode = string
  })))
  description = "The system's own BigQuery tables in the dataset (pipeline sources and snapshots are made at run time)."
}
