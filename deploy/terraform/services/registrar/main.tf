# registrar alone: `terraform apply` here ships this service (Cloud Run, its service accounts and
# roles, its push subscriptions) onto the shared topology that deploy/terraform applied once.
#
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/services/registrar"
#   terraform apply -var project=<project> -var state_bucket=<state bucket> -var image=<image> \
#     -var serving_image=<predictor image>
#
# deploy/cloudbuild/registrar.yaml runs exactly this after building, testing and pushing the image.

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
  description = "The registrar image to run (by tag or, better, by digest)."
}

variable "code_version" {
  type        = string
  description = "Git commit of the image, recorded in lineage (MLOPS_CODE_VERSION)."
  default     = ""
}

variable "serving_image" {
  type        = string
  description = "The predictor image, recorded on each model version as its serving container (MLOPS_SERVING_IMAGE)."
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
  wiring   = local.topology.services["registrar"]
}

module "registrar" {
  source = "../../modules/service"

  name           = "registrar"
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

  # Uploads model versions and moves aliases in the Vertex AI Model Registry, and records the intent
  # of each upload in the bucket (operations/registrar/) before sending it.
  project_roles = ["roles/aiplatform.user"]
  bucket_role   = "roles/storage.objectUser"

  env = {
    MLOPS_SERVING_IMAGE = var.serving_image
  }

  # Duplicates of one event are serialized in-process (the idempotence check must not race): a single instance.
  max_instances = 1
}

output "url" {
  value = module.registrar.url
}

output "service_account" {
  value = module.registrar.service_account
}
