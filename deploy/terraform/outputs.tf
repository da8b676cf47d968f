# What each service's root module (services/<name>) reads through terraform_remote_state.

output "project" {
  value = var.project
}

output "region" {
  value = var.region
}

output "services" {
  description = "The topology: which service consumes and publishes which topics."
  value       = var.services
}

output "delivery" {
  description = "Retry and dead-letter policy of every push subscription."
  value       = var.delivery
}

output "topic_ids" {
  description = "Topic name -> id (projects/<p>/topics/<name>), the dead-letter topic included."
  value = merge(
    { for name, topic in google_pubsub_topic.event : name => topic.id },
    { (var.dead_letter_topic) = google_pubsub_topic.dead_letter.id },
  )
}

output "dead_letter_topic" {
  value = var.dead_letter_topic
}

output "pubsub_service_agent" {
  description = "IAM member of the project's Pub/Sub service agent."
  value       = local.pubsub_service_agent
}

output "dataset" {
  value = google_bigquery_dataset.main.dataset_id
}

output "snapshot_dataset" {
  value = google_bigquery_dataset.snapshots.dataset_id
}

output "bucket" {
  value = google_storage_bucket.main.name
}

output "repository" {
  description = "Artifact Registry Docker repository of the service images (its id)."
  value       = google_artifact_registry_repository.images.repository_id
}

output "image_repository" {
  description = "Full path images are pushed to: the Cloud Build files' _IMAGE_REPOSITORY."
  # <location>-docker.pkg.dev/<project>/<repository>, built from its parts (builds.tf): google 6.x has no
  # registry_uri attribute.
  value = local.image_repository
}

output "project_number" {
  description = "The project's number: the services' push audiences are their deterministic run.app URLs."
  value       = data.google_project.this.number
}

output "serving_service_account" {
  description = "Email of the account Vertex AI runs the serving containers as (MLOPS_SERVING_SERVICE_ACCOUNT)."
  value       = google_service_account.serving.email
}
