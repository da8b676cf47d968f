# evaluator alone: `terraform apply` here ships this service (Cloud Run, its service accounts and
# roles, its push subscriptions) onto the shared topology that deploy/terraform applied once.
#
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/services/evaluator"
#   terraform apply -var project=<project> -var state_bucket=<state bucket> -var image=<image>
#
# deploy/cloudbuild/evaluator.yaml runs exactly this after building, testing and pushing the image.

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
  description = "The evaluator image to run (by tag or, better, by digest)."
}

variable "code_version" {
  type        = string
  description = "Git commit of the image, recorded in lineage (MLOPS_CODE_VERSION)."
  default     = ""
}

variable "trainer_backend" {
  type        = string
  description = "Must match the trainer's (MLOPS_TRAINER_BACKEND): it scores the artifacts the trainer made."
  default     = "sklearn"
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
  wiring   = local.topology.services["evaluator"]
}

module "evaluator" {
  source = "../../modules/service"

  name           = "evaluator"
  project        = var.project
  region         = var.region
  project_number = local.topology.project_number
  image          = var.image
  code_version   = var.code_version

  consumes             = local.wiring.consumes
  publishes            = local.wiring.publishes
  topic_ids            = local.topology.topic_ids
  dead_letter_topic    = local.topology.dead_letter_topic
  delivery             = local.topology.delivery
  pubsub_service_agent = local.topology.pubsub_service_agent
  bucket               = local.topology.bucket

  # Reads snapshots and artifacts, and the champion's version in the registry (read only).
  project_roles = ["roles/bigquery.jobUser", "roles/aiplatform.viewer"]
  dataset_roles = {
    (local.topology.dataset)          = "roles/bigquery.dataViewer"
    (local.topology.snapshot_dataset) = "roles/bigquery.dataViewer"
  }
  bucket_role = "roles/storage.objectViewer"

  env = {
    MLOPS_DATASET          = local.topology.dataset
    MLOPS_SNAPSHOT_DATASET = local.topology.snapshot_dataset
    MLOPS_TRAINER_BACKEND  = var.trainer_backend
  }

  # Scores two models on the held-out rows: CPU-bound, one push per instance.
  concurrency   = 1
  max_instances = 3
  cpu           = "2"
  memory        = "4Gi"
}

output "url" {
  value = module.evaluator.url
}

output "service_account" {
  value = module.evaluator.service_account
}
