# One service of the loop: a Cloud Run service under its own service account with only the roles it
# needs, and an OIDC-authenticated push subscription per consumed topic, with the topology's retry
# and dead-letter policy. Used by deploy/terraform/services/<name>/main.tf.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

locals {
  # Every service reports failures on stage.failed and parks poison messages on the dead-letter topic.
  published = toset(concat(var.publishes, [var.failure_topic, var.dead_letter_topic]))
  # The audience of the push tokens: the service's deterministic URL, known before the service exists
  # (the service checks it, so it cannot be read back from the service's own `uri`), and accepted by
  # Cloud Run's own token check as one of the service's custom audiences.
  push_audience = "https://${var.name}-${var.project_number}.${var.region}.run.app"
  env = merge(
    {
      MLOPS_PROJECT              = var.project
      MLOPS_LOCATION             = var.region
      MLOPS_BUCKET               = var.bucket
      MLOPS_DEAD_LETTER_TOPIC    = var.dead_letter_topic
      MLOPS_METRICS_SINK         = var.metrics_sink
      MLOPS_PUSH_AUDIENCE        = local.push_audience
      MLOPS_PUSH_SERVICE_ACCOUNT = google_service_account.invoker.email
    },
    var.code_version == "" ? {} : { MLOPS_CODE_VERSION = var.code_version },
    var.env,
  )
}

# ---------------------------------------------------------------- identities

resource "google_service_account" "service" {
  account_id   = "mlops-${var.name}"
  display_name = "mlops ${var.name} (Cloud Run service)"
}

# Pub/Sub signs its pushes as this account; it may only invoke this service.
resource "google_service_account" "invoker" {
  account_id   = "mlops-${var.name}-push"
  display_name = "mlops ${var.name} push subscriptions (OIDC)"
}

# The Pub/Sub service agent mints the OIDC tokens for the invoker account.
resource "google_service_account_iam_member" "pubsub_mints_tokens" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = var.pubsub_service_agent
}

# ---------------------------------------------------------------- the service's own permissions

resource "google_project_iam_member" "service" {
  for_each = toset(var.project_roles)
  project  = var.project
  role     = each.value
  member   = google_service_account.service.member
}

# Stage metrics (latency per outcome, candidate metrics) as custom metrics.
resource "google_project_iam_member" "metric_writer" {
  count   = var.metrics_sink == "cloud-monitoring" ? 1 : 0
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = google_service_account.service.member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.published
  topic    = var.topic_ids[each.value]
  role     = "roles/pubsub.publisher"
  member   = google_service_account.service.member
}

resource "google_bigquery_dataset_iam_member" "service" {
  for_each   = var.dataset_roles
  dataset_id = each.key
  role       = each.value
  member     = google_service_account.service.member
}

resource "google_storage_bucket_iam_member" "service" {
  count  = var.bucket_role == null ? 0 : 1
  bucket = var.bucket
  role   = var.bucket_role
  member = google_service_account.service.member
}

# ---------------------------------------------------------------- Cloud Run

resource "google_cloud_run_v2_service" "service" {
  name                = var.name
  location            = var.region
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  custom_audiences    = [local.push_audience]

  template {
    service_account                  = google_service_account.service.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "${var.request_timeout_s}s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      ports {
        container_port = 8080 # Cloud Run sets PORT to this; the image's gunicorn binds :$PORT
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU stays allocated between requests: the metrics flush (and the inference-logger's batching)
        # run on background threads that would get no CPU after a response with cpu_idle = true.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.env
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 30
      }
    }
  }

  depends_on = [
    google_project_iam_member.service,
    google_project_iam_member.metric_writer,
    google_pubsub_topic_iam_member.publisher,
    google_bigquery_dataset_iam_member.service,
    google_storage_bucket_iam_member.service,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = toset(concat([google_service_account.invoker.member], var.invoker_members))
  name     = google_cloud_run_v2_service.service.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}

# ---------------------------------------------------------------- push subscriptions

resource "google_pubsub_subscription" "push" {
  for_each             = toset(var.consumes)
  name                 = "${each.value}--${var.name}" # mlops.topology.push_subscription
  topic                = var.topic_ids[each.value]
  ack_deadline_seconds = var.delivery.ack_deadline_s

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.service.uri}/push"
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = local.push_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.delivery.min_backoff_s}s"
    maximum_backoff = "${var.delivery.max_backoff_s}s"
  }

  dead_letter_policy {
    dead_letter_topic     = var.topic_ids[var.dead_letter_topic]
    max_delivery_attempts = var.delivery.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, however quiet the topic
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invoker,
    google_service_account_iam_member.pubsub_mints_tokens,
  ]
}

# To forward a message to the dead-letter topic Pub/Sub must also be able to ack it on this
# subscription (publisher on the dead-letter topic is granted once, in deploy/terraform/main.tf).
resource "google_pubsub_subscription_iam_member" "pubsub_acks" {
  for_each     = google_pubsub_subscription.push
  subscription = each.value.id
  role         = "roles/pubsub.subscriber"
  member       = var.pubsub_service_agent
}
