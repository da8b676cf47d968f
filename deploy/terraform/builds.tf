# One Cloud Build trigger per service: a push to the branch that touches the service, the shared library,
# the schemas or its deploy files runs deploy/cloudbuild/<service>.yaml (test, build, push, and for the
# Cloud Run services `terraform apply` of deploy/terraform/services/<service>). Made only when
# `source_repository` names a Cloud Build repository (connect it once in the console or with gcloud).

locals {
  # The topology's services, the predictor (only an image, Vertex AI serving) and the dashboard (a Cloud
  # Run service that hears no event, so not in the topology).
  build_services = var.source_repository == null ? toset([]) : toset(concat(keys(var.services), ["predictor", "dashboard"]))
  image_repository = join("/", [
    "${google_artifact_registry_repository.images.location}-docker.pkg.dev",
    google_artifact_registry_repository.images.project,
    google_artifact_registry_repository.images.repository_id,
  ])
}

resource "google_cloudbuild_trigger" "service" {
  for_each        = local.build_services
  name            = "mlops-${each.key}"
  location        = var.region
  description     = "Test, build and ship ${each.key} (deploy/cloudbuild/${each.key}.yaml)."
  filename        = "deploy/cloudbuild/${each.key}.yaml"
  service_account = var.build_service_account == null ? null : "projects/${var.project}/serviceAccounts/${var.build_service_account}"

  repository_event_config {
    repository = var.source_repository
    push {
      branch = var.source_branch
    }
  }

  included_files = [
    "services/${each.key}/**",
    "shared/**",
    "schemas/**",
    "pyproject.toml",
    "deploy/cloudbuild/${each.key}.yaml",
    "deploy/terraform/services/${each.key}/**",
    "deploy/terraform/modules/**",
  ]

  substitutions = {
    _REGION           = var.region
    _IMAGE_REPOSITORY = local.image_repository
    _STATE_BUCKET     = var.state_bucket
  }

  lifecycle {
    precondition {
      condition     = var.state_bucket != null
      error_message = "state_bucket is required with source_repository: the builds apply Terraform with that state."
    }
  }

  depends_on = [google_project_service.apis]
}
