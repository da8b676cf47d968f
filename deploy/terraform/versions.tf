terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }

  # State in a Cloud Storage bucket; the services' root modules read this state's outputs.
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=mlops/topology"
  backend "gcs" {}
}

provider "google" {
  project = var.project
  region  = var.region
}
