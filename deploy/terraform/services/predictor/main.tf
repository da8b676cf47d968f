# predictor alone: `terraform apply` here ships this service (Cloud Run, its service accounts and
# roles, its push subscriptions) onto the shared topology that deploy/terraform applied once.
#
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/services/predictor"
#   terraform apply -var project=<project> -var state_bucket=<state bucket> -var image=<image>
#
# deploy/cloudbuild/predictor.yaml runs exactly this after building, testing and pushing the image.

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
  description = "The predictor image to run (by tag or, better, by digest)."
}

variable "code_version" {
  type        = string
  description = "Git commit of the image, recorded in lineage (MLOPS_CODE_VERSION)."
  default     = ""
}

variable "invoker_members" {
  type        = list(string)
  description = "Who may call /predict, e.g. [\"serviceAccount:client@<project>.iam.gserviceaccount.com\"]."
  default     = []
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
  wiring   = local.topology.services["predictor"]
}

module "predictor" {
  source = "../../modules/service"

  name         = "predictor"
  project      = var.project
  region       = var.region
  image        = var.image
  code_version = var.code_version

  consumes             = local.wiring.consumes
  publishes            = local.wiring.publishes
  topic_ids            = local.topology.topic_ids
  dead_letter_topic    = local.topology.dead_letter_topic
  delivery             = local.topology.delivery
  pubsub_service_agent = local.topology.pubsub_service_agent
  bucket               = local.topology.bucket

  # Reads artifacts and deployment manifests; publishes prediction.made.
  bucket_role = "roles/storage.objectViewer"
  # At start, takes each restored deployment's artifact and checksum from the model registry (read only).
  project_roles = ["roles/aiplatform.viewer"]

  # Serves traffic: reachable from outside the project (IAM still applies), one warm instance,
  # 16 concurrent requests as the image's gunicorn has 16 threads.
  ingress           = "INGRESS_TRAFFIC_ALL"
  invoker_members   = var.invoker_members
  min_instances     = 1
  max_instances     = 10
  concurrency       = 16
  memory            = "2Gi"
  request_timeout_s = 60
}

output "url" {
  value = module.predictor.url
}

output "service_account" {
  value = module.predictor.service_account
}
