# The identity Vertex AI runs every deployed model version's serving container (the predictor image) as:
# the deployer passes it at DeployModel (MLOPS_SERVING_SERVICE_ACCOUNT), so a serving container can do
# no more than load its artifact, publish its predictions and write its metrics.

locals {
  predictions_topic = "prediction.made.v1"
}

resource "google_service_account" "serving" {
  account_id   = "mlops-serving"
  display_name = "mlops serving containers (Vertex AI endpoints)"
  depends_on   = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "serving_reads_artifacts" {
  bucket = google_storage_bucket.main.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.serving.member
}

resource "google_pubsub_topic_iam_member" "serving_publishes_predictions" {
  topic  = google_pubsub_topic.event[local.predictions_topic].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.serving.member
}

resource "google_project_iam_member" "serving_writes_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = google_service_account.serving.member
}

# Vertex AI's own service agent reads the artifact folder (artifactUri) at upload and deploy. It exists
# once aiplatform.googleapis.com is enabled; a first apply right after enabling may have to be re-run.
resource "google_storage_bucket_iam_member" "vertex_reads_artifacts" {
  bucket     = google_storage_bucket.main.name
  role       = "roles/storage.objectViewer"
  member     = local.vertex_service_agent
  depends_on = [google_project_service.apis]
}
