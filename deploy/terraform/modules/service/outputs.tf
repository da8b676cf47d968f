output "url" {
  description = "The Cloud Run service's URL (pushes go to <url>/push)."
  value       = google_cloud_run_v2_service.service.uri
}

output "service_account" {
  description = "The account the service runs as."
  value       = google_service_account.service.email
}

output "invoker_account" {
  description = "The account Pub/Sub signs its pushes as (OIDC)."
  value       = google_service_account.invoker.email
}

output "subscriptions" {
  description = "Topic -> push subscription id."
  value       = { for topic, subscription in google_pubsub_subscription.push : topic => subscription.id }
}
