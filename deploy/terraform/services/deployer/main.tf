# deployer alone: `terraform apply` here ships this service (Cloud Run, its service accounts and
# roles, its push subscriptions) onto the shared topology that deploy/terraform applied once.
#
#   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/services/deployer"
#   terraform apply -var project=<project> -var state_bucket=<state bucket> -var image=<image>
#
# deploy/cloudbuild/deployer.yaml runs exactly this after building, testing and pushing the image.

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
  description = "The deployer image to run (by tag or, better, by digest)."
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
  wiring   = local.topology.services["deployer"]
}

module "deployer" {
  source = "../../modules/service"

  name           = "deployer"
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

  # Creates endpoints, deploys/undeploys versions and sets traffic splits in Vertex AI; records the
  # intent and operation of each deploy in the bucket before starting it; reads specs.
  project_roles = ["roles/aiplatform.user"]
  bucket_role   = "roles/storage.objectUser"

  env = {
    # Vertex AI runs each deployed version's serving container as this account (DeployModel's
    # serviceAccount), which needs actAs on it (below).
    MLOPS_SERVING_SERVICE_ACCOUNT = local.topology.serving_service_account
  }

  # Duplicates of one event are serialized in-process (the idempotence check must not race): a single instance.
  max_instances = 1
}

# DeployModel with a service account is refused unless the caller may act as that account.
resource "google_service_account_iam_member" "deployer_acts_as_serving" {
  service_account_id = "projects/${var.project}/serviceAccounts/${local.topology.serving_service_account}"
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${module.deployer.service_account}"
}

output "url" {
  value = module.deployer.url
}

output "service_account" {
  value = module.deployer.service_account
}
