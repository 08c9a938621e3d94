# Event Grid: how bronze objects reach bronze_to_silver.
#  - a custom topic for `movielake.bronze.landed`, published by the code after it lands bronze
#    (TMDB pulls), with the user-assigned identity (EventGrid Data Sender, no access keys). The code
#    publishes CloudEvents 1.0 batches (application/cloudevents-batch+json,
#    crates/movielake/src/clients/eventgrid.rs), so the topic's input schema is CloudEvents 1.0 and its
#    subscription delivers CloudEvents 1.0 (infra/checks/consistency_check.py holds the three
#    together);
#  - a system topic on the lake account: BlobCreated under bronze/imdb/ and bronze/movies_dataset/
#    (files that arrive from outside);
#  - a subscription on each, calling bronze_to_silver, retried and then dead-lettered to the host
#    account (each topic writes dead letters with its own system-assigned identity).
# Subscriptions exist only when var.enable_event_grid_subscriptions is true AND functions/
# has bronze_to_silver: Event Grid validates the Function endpoint when a subscription is
# created, so the first apply precedes the first code deploy (docs/deploy.md).

locals {
  bronze_landed_event_type = "movielake.bronze.landed"
  bronze_file_prefixes = [
    "/blobServices/default/containers/bronze/blobs/imdb/",
    "/blobServices/default/containers/bronze/blobs/movies_dataset/",
  ]
}

resource "azurerm_eventgrid_topic" "bronze_landed" {
  # checkov:skip=CKV_AZURE_193:The publisher (the Function App) has no VNet integration; it reaches the topic's public endpoint with an Azure AD token (local auth is off).
  name                = local.names.bronze_topic
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  # What the topic accepts must be what the code sends: an EventGridSchema topic answers 400 to
  # a CloudEvents batch. https://learn.microsoft.com/azure/event-grid/cloud-event-schema
  input_schema                  = "CloudEventSchemaV1_0"
  local_auth_enabled            = false
  public_network_access_enabled = true
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_eventgrid_system_topic" "lake" {
  name                = local.names.lake_system_topic
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  source_resource_id  = azurerm_storage_account.lake.id
  topic_type          = "Microsoft.Storage.StorageAccounts"
  tags                = local.tags

  identity {
    type = "SystemAssigned"
  }
}

check "event_grid_subscription_targets" {
  assert {
    condition     = !var.enable_event_grid_subscriptions || contains(local.functions, "bronze_to_silver")
    error_message = "enable_event_grid_subscriptions is true but functions/bronze_to_silver does not exist yet: no Event Grid subscription is created until it does."
  }
}

resource "azurerm_eventgrid_system_topic_event_subscription" "bronze_files" {
  count                = var.enable_event_grid_subscriptions && contains(local.functions, "bronze_to_silver") ? 1 : 0
  name                 = "bronze-files-to-silver"
  system_topic         = azurerm_eventgrid_system_topic.lake.name
  resource_group_name  = azurerm_resource_group.main.name
  included_event_types = ["Microsoft.Storage.BlobCreated"]
  # Storage's system events, delivered in Event Grid's own schema (the default, written out):
  # bronze_to_silver reads both schemas (crates/movielake-core/src/host/eventgrid.rs).
  event_delivery_schema = "EventGridSchema"

  advanced_filter {
    string_begins_with {
      key    = "subject"
      values = local.bronze_file_prefixes
    }
    # A blob is complete only after these calls (on ADLS Gen2 a file is created empty first:
    # CreateFile also raises BlobCreated, FlushWithClose is the one that means "written").
    string_in {
      key    = "data.api"
      values = ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"]
    }
  }

  azure_function_endpoint {
    function_id          = "${azurerm_function_app_flex_consumption.app.id}/functions/bronze_to_silver"
    max_events_per_batch = 1
  }

  retry_policy {
    max_delivery_attempts = var.event_grid_max_delivery_attempts
    event_time_to_live    = var.event_grid_event_ttl_minutes
  }

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.host.id
    storage_blob_container_name = azurerm_storage_container.deadletter.name
  }

  depends_on = [azurerm_role_assignment.lake_topic_deadletter]
}

resource "azurerm_eventgrid_event_subscription" "bronze_landed" {
  count                = var.enable_event_grid_subscriptions && contains(local.functions, "bronze_to_silver") ? 1 : 0
  name                 = "bronze-landed-to-silver"
  scope                = azurerm_eventgrid_topic.bronze_landed.id
  included_event_types = [local.bronze_landed_event_type]
  # A CloudEvents input topic can only deliver CloudEvents: "An Event Grid output schema can't be
  # used when using CloudEvents as an input schema".
  # https://learn.microsoft.com/azure/event-grid/cloud-event-schema
  event_delivery_schema = "CloudEventSchemaV1_0"

  azure_function_endpoint {
    function_id          = "${azurerm_function_app_flex_consumption.app.id}/functions/bronze_to_silver"
    max_events_per_batch = 1
  }

  retry_policy {
    max_delivery_attempts = var.event_grid_max_delivery_attempts
    event_time_to_live    = var.event_grid_event_ttl_minutes
  }

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.host.id
    storage_blob_container_name = azurerm_storage_container.deadletter.name
  }

  depends_on = [azurerm_role_assignment.bronze_topic_deadletter]
}
