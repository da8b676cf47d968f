# The shared topology, applied once per project: APIs, Pub/Sub schemas and topics, the dead-letter
# topic, the archive (a BigQuery subscription per topic into `events`), the BigQuery datasets and
# tables, the bucket, the Artifact Registry repository and the Cloud Scheduler ticks; the Vertex AI
# serving account (serving.tf), the Cloud Build triggers (builds.tf) and the alert policies (alerts.tf).
# Each service (Cloud Run, its service accounts, its push subscriptions) is applied alone from
# services/<name>.

data "google_project" "this" {
  project_id = var.project
}

locals {
  bucket               = coalesce(var.bucket, "${var.project}-mlops")
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  # Vertex AI's service agent reads a model's artifactUri when a version is uploaded and deployed.
  vertex_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"
  # Every topic is archived, the dead-letter topic too (mlops.topology.ALL_TOPICS).
  archived_topics = concat(var.topics, [var.dead_letter_topic])
  # BigQuery's legacy names, which the API returns, so that plans stay empty after apply.
  bigquery_types = { INT64 = "INTEGER", FLOAT64 = "FLOAT", BOOL = "BOOLEAN" }
  # Big, append-only tables are partitioned by day on their time column.
  partition_columns = { events = "publish_time", predictions = "predicted_at" }
  # The inference-logger asks several times a second which of a batch's request ids a pipeline has
  # logged within the dedupe horizon: clustered so, that query reads the blocks holding them.
  clustering_columns = { predictions = ["pipeline", "request_id"] }
}

# Every API the services, the deploys and this Terraform call: bigquerystorage for the Storage Read and
# Write APIs (predictions in and out), monitoring for the custom metrics and alert policies,
# iamcredentials for the push tokens Pub/Sub mints, cloudresourcemanager for the project IAM bindings.
resource "google_project_service" "apis" {
  for_each = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------- Pub/Sub: schemas and topics

resource "google_pubsub_schema" "event" {
  for_each   = toset(var.topics)
  name       = each.value
  type       = "AVRO"
  definition = file("${path.module}/../../schemas/${each.value}.avsc")
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "event" {
  for_each = toset(var.topics)
  name     = each.value

  # Pub/Sub rejects a message whose JSON body does not fit the topic's Avro schema.
  schema_settings {
    schema   = google_pubsub_schema.event[each.value].id
    encoding = "JSON"
  }
}

resource "google_pubsub_topic" "dead_letter" {
  name       = var.dead_letter_topic
  depends_on = [google_project_service.apis]
}

# The Pub/Sub service agent moves a message to the dead-letter topic after the last delivery attempt.
# Granted here, once, on the topic this module owns: the same binding made by each service's module
# would be removed for all of them by the first service destroyed. (Subscriber on each push
# subscription, the other half, is granted per service in modules/service.)
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# ---------------------------------------------------------------- BigQuery

resource "google_bigquery_dataset" "main" {
  dataset_id = var.dataset
  location   = var.dataset_location
  depends_on = [google_project_service.apis]
}

resource "google_bigquery_dataset" "snapshots" {
  dataset_id  = var.snapshot_dataset
  location    = var.dataset_location
  description = "Immutable training snapshots, one table per data version (written by the data-watcher)."
  depends_on  = [google_project_service.apis]
}

resource "google_bigquery_table" "system" {
  for_each            = var.tables
  dataset_id          = google_bigquery_dataset.main.dataset_id
  table_id            = each.key
  deletion_protection = var.protect_data
  clustering          = lookup(local.clustering_columns, each.key, null)
  schema = jsonencode([
    for column in each.value : {
      name = column.name
      type = lookup(local.bigquery_types, column.type, column.type)
      mode = column.mode
    }
  ])

  dynamic "time_partitioning" {
    for_each = contains(keys(local.partition_columns), each.key) ? [local.partition_columns[each.key]] : []
    content {
      type  = "DAY"
      field = time_partitioning.value
    }
  }
}

# ---------------------------------------------------------------- the archive: every topic -> `events`

resource "google_bigquery_table_iam_member" "archive_writer" {
  dataset_id = google_bigquery_dataset.main.dataset_id
  table_id   = google_bigquery_table.system["events"].table_id
  role       = "roles/bigquery.dataEditor"
  member     = local.pubsub_service_agent
}

resource "google_pubsub_subscription" "archive" {
  for_each = toset(local.archived_topics)
  name     = "${each.value}--archive" # mlops.topology.archive_subscription
  topic    = each.value == var.dead_letter_topic ? google_pubsub_topic.dead_letter.id : google_pubsub_topic.event[each.value].id

  # The columns of the `events` table: subscription_name, message_id, publish_time, data, attributes.
  bigquery_config {
    table            = "${var.project}.${google_bigquery_dataset.main.dataset_id}.${google_bigquery_table.system["events"].table_id}"
    write_metadata   = true
    use_topic_schema = false
  }

  expiration_policy {
    ttl = "" # never expires
  }

  depends_on = [google_bigquery_table_iam_member.archive_writer]
}

# ---------------------------------------------------------------- Cloud Storage and Artifact Registry

resource "google_storage_bucket" "main" {
  name                        = local.bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.protect_data

  versioning {
    enabled = true
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "images" {
  repository_id = var.repository
  location      = var.region
  format        = "DOCKER"
  description   = "Service images, built by deploy/cloudbuild/<service>.yaml."
  depends_on    = [google_project_service.apis]
}

# ---------------------------------------------------------------- Cloud Scheduler: one tick per pipeline

resource "google_cloud_scheduler_job" "tick" {
  for_each  = var.pipelines
  name      = "mlops-tick-${each.key}"
  region    = var.region
  schedule  = each.value.schedule
  time_zone = each.value.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.event["watch.tick.v1"].id
    # Avro's JSON encoding: a union's non-null value is wrapped in its type name.
    data = base64encode(jsonencode({ pipeline = { string = each.key }, reason = "schedule" }))
    # The static CloudEvents attributes; ce-id, ce-time and run_id cannot be templated by Scheduler,
    # so the push decoder takes them from the message's messageId and publishTime.
    attributes = {
      "ce-type"            = "watch.tick.v1"
      "ce-source"          = "//mlops/services/cloud-scheduler"
      "ce-specversion"     = "1.0"
      "ce-dataschema"      = "schemas/watch.tick.v1.avsc"
      "ce-datacontenttype" = "application/json"
      "pipeline"           = each.key
    }
  }

  depends_on = [google_project_service.apis]
}
