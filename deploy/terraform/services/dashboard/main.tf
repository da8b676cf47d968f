# dashboard alone: `terraform apply` here ships this service (Cloud Run, its service accounts and
# roles, its push subscriptions) onto the shared topology that deploy/terraform applied once.
#
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/services/dashboard"
#   terraform apply -var project=<project> -var state_bucket=<state bucket> -var image=<image>
#
# deploy/cloudbuild/dashboard.yaml runs exactly this after building, testing and pushing the image.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
  backend "gcs" {}
}

provider "google" {
  project = var.project
  region  = var.region
}

variable "project" {
  type = string
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service."
  default     = "us-central1"
}

variable "state_bucket" {
  type        = string
  description = "Bucket holding the Terraform state of deploy/terraform (the shared topology)."
}

variable "topology_prefix" {
  type        = string
  description = "Prefix of that state in the bucket."
  default     = "mlops/topology"
}

variable "image" {
  type        = string
  description = "The dashboard image to run (by tag or, better, by digest)."
}

variable "invoker_members" {
  type        = list(string)
  description = "Who may open the dashboard (run.invoker), e.g. [\"group:mlops-operators@example.com\"]."
  default     = []
}

variable "code_version" {
  type        = string
  description = "Git commit of the image, recorded in lineage (MLOPS_CODE_VERSION)."
  default     = ""
}

data "terraform_remote_state" "topology" {
  backend = "gcs"
  config = {
    bucket = var.state_bucket
    prefix = var.topology_prefix
  }
}

locals {
  topology = data.terraform_remote_state.topology.outputs
  # Replay re-publishes an archived event on its own topic: publisher on every event topic.
  event_topics = [for topic in keys(local.topology.topic_ids) : topic if topic != local.topology.dead_letter_topic]
}

# Not in the topology: the dashboard consumes no event (a person opens it), so it has no push subscription.
module "dashboard" {
  source = "../../modules/service"

  name           = "dashboard"
  project        = var.project
  region         = var.region
  project_number = local.topology.project_number
  image          = var.image
  code_version   = var.code_version

  consumes             = []
  publishes            = local.event_topics
  topic_ids            = local.topology.topic_ids
  dead_letter_topic    = local.topology.dead_letter_topic
  delivery             = local.topology.delivery
  pubsub_service_agent = local.topology.pubsub_service_agent
  bucket               = local.topology.bucket

  # Reads the archive, predictions and monitoring_checks, the registry, the alert conditions' figures
  # and the specs.
  project_roles = ["roles/bigquery.jobUser", "roles/aiplatform.viewer", "roles/monitoring.viewer"]
  dataset_roles = {
    (local.topology.dataset) = "roles/bigquery.dataViewer"
  }
  bucket_role = "roles/storage.objectViewer"

  env = {
    MLOPS_DATASET          = local.topology.dataset
    MLOPS_SNAPSHOT_DATASET = local.topology.snapshot_dataset
  }

  # People reach it (IAM still applies: invoker_members); one instance, as the session key is per
  # process unless MLOPS_UI_SECRET_KEY is set.
  ingress           = "INGRESS_TRAFFIC_ALL"
  invoker_members   = var.invoker_members
  max_instances     = 1
  request_timeout_s = 60
}

output "url" {
  value = module.dashboard.url
}

output "service_account" {
  value = module.dashboard.service_account
}
