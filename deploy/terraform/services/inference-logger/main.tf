# inference-logger alone: `terraform apply` here ships this service (Cloud Run, its service accounts and
# roles, its push subscriptions) onto the shared topology that deploy/terraform applied once.
#
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/services/inference-logger"
#   terraform apply -var project=<project> -var state_bucket=<state bucket> -var image=<image>
#
# deploy/cloudbuild/inference-logger.yaml runs exactly this after building, testing and pushing the image.

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
  description = "The inference-logger image to run (by tag or, better, by digest)."
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
  wiring   = local.topology.services["inference-logger"]
}

module "inference_logger" {
  source = "../../modules/service"

  name           = "inference-logger"
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

  # Inserts prediction rows (and looks their request ids up first) in the dataset's predictions table.
  project_roles = ["roles/bigquery.jobUser"]
  dataset_roles = {
    (local.topology.dataset) = "roles/bigquery.dataEditor"
  }

  env = {
    MLOPS_DATASET = local.topology.dataset
  }

  # The request-id check and the insert are serialized in-process (overlapping batches must not both
  # find an id missing): a single instance. One instance inserts far more than 500 predictions/s.
  max_instances = 1
}

output "url" {
  value = module.inference_logger.url
}

output "service_account" {
  value = module.inference_logger.service_account
}
