# Alert policies on Pub/Sub's own metrics and on the custom metrics the services write through the
# MetricsSink port (custom.googleapis.com/mlops/<name>, gauges on generic_task, one series per process):
# the cloud side of `mlops alerts`. Each notifies var.notification_channels (none: console only).

locals {
  custom_metric       = "custom.googleapis.com/mlops"
  alert_documentation = "`mlops alerts` evaluates the same conditions on a local stack (deploy/README.md, Alerts)."
  # The custom metrics the alerts read, with exactly the labels the code records them with
  # (tests/contract/test_terraform_schema.py compares them). Declared here because Cloud Monitoring
  # refuses an alert policy on a metric type that does not exist yet, and the services only create
  # theirs at their first write. A write with a label not declared here is refused.
  alerted_metrics = {
    stage_failed      = { labels = ["service", "event_type", "permanent"], description = "1 per failed push (the push endpoint's stage.failed)." }
    monitoring_value  = { labels = ["pipeline", "check_kind", "measure"], description = "The value of a monitoring check (the monitor)." }
    monitoring_breach = { labels = ["pipeline", "check_kind"], description = "1 per monitoring check that crossed its threshold (the monitor)." }
    canary_judged     = { labels = ["pipeline", "outcome"], description = "1 per canary judgement, outcome promoted or rolled_back (the monitor)." }
  }
}

resource "google_monitoring_metric_descriptor" "alerted" {
  for_each     = local.alerted_metrics
  type         = "${local.custom_metric}/${each.key}"
  display_name = "mlops ${each.key}"
  description  = each.value.description
  metric_kind  = "GAUGE" # the MetricsSink adapter writes gauges of doubles
  value_type   = "DOUBLE"

  dynamic "labels" {
    for_each = each.value.labels
    content {
      key        = labels.value
      value_type = "STRING"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "mlops: messages dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"

  # Pub/Sub forwarded a message to the dead-letter topic after its last delivery attempt.
  conditions {
    display_name = "dead-lettered by Pub/Sub, per subscription"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.subscription_id"]
      }
    }
  }

  # A service parked a poison message itself (publishes straight to the dead-letter topic).
  conditions {
    display_name = "published to the dead-letter topic"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND resource.label.topic_id = \"${var.dead_letter_topic}\" AND metric.type = \"pubsub.googleapis.com/topic/send_request_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Dead letters are archived in the `events` table; `mlops replay` publishes them again once fixed. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "oldest_unacked" {
  display_name          = "mlops: subscription backlog too old"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "oldest unacked message older than ${var.alert_thresholds.oldest_unacked_age_s}s, per subscription"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.oldest_unacked_age_s
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["resource.label.subscription_id"]
      }
    }
  }

  documentation {
    content   = "A consumer is down, failing every delivery, or too slow. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "stage_failed" {
  display_name          = "mlops: stage failures"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "more than ${var.alert_thresholds.stage_failed_per_5m} stage failures in 5 minutes, per service and event type"
    condition_threshold {
      filter          = "resource.type = \"generic_task\" AND metric.type = \"${local.custom_metric}/stage_failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.stage_failed_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service", "metric.label.event_type"]
      }
    }
  }

  documentation {
    content   = "Each failure is a stage.failed event with its reason (`mlops events --type stage.failed.v1`). ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_monitoring_metric_descriptor.alerted]
}

resource "google_monitoring_alert_policy" "monitoring_breach" {
  display_name          = "mlops: model monitoring threshold crossed"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "a check crossed its threshold, per pipeline and check kind"
    condition_threshold {
      filter          = "resource.type = \"generic_task\" AND metric.type = \"${local.custom_metric}/monitoring_breach\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.pipeline", "metric.label.check_kind"]
      }
    }
  }

  documentation {
    content   = "Drift, score drift, data quality, realized performance or freshness crossed the spec's threshold; the rows are in the `monitoring_checks` table. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_monitoring_metric_descriptor.alerted]
}

resource "google_monitoring_alert_policy" "canary_rolled_back" {
  display_name          = "mlops: canary rolled back"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "a canary was rolled back, per pipeline"
    condition_threshold {
      filter          = "resource.type = \"generic_task\" AND metric.type = \"${local.custom_metric}/canary_judged\" AND metric.label.outcome = \"rolled_back\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.pipeline"]
      }
    }
  }

  documentation {
    content   = "The canary.judged event names the signal that failed. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_monitoring_metric_descriptor.alerted]
}

resource "google_monitoring_alert_policy" "no_monitoring_data" {
  display_name          = "mlops: no monitoring data"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "no monitoring_value for ${var.alert_thresholds.no_data_s}s, per pipeline"
    condition_absent {
      filter   = "resource.type = \"generic_task\" AND metric.type = \"${local.custom_metric}/monitoring_value\""
      duration = "${var.alert_thresholds.no_data_s}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_COUNT"
        group_by_fields      = ["metric.label.pipeline"]
      }
    }
  }

  documentation {
    content   = "The monitor wrote no check for this pipeline: no ticks (Cloud Scheduler), the monitor failing, or no predictions to check. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_monitoring_metric_descriptor.alerted]
}
