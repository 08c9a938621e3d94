# Event Hubs: the watch-events stream read by ingest_watch_events. Local (SAS key) auth is off:
# producers and the Function use Azure AD.

resource "azurerm_eventhub_namespace" "main" {
  name                          = local.names.eventhubs
  resource_group_name           = azurerm_resource_group.main.name
  location                      = azurerm_resource_group.main.location
  sku                           = var.eventhubs_sku
  capacity                      = var.eventhubs_capacity
  auto_inflate_enabled          = var.eventhubs_sku == "Standard" ? var.eventhubs_auto_inflate : false
  maximum_throughput_units      = var.eventhubs_sku == "Standard" && var.eventhubs_auto_inflate ? max(var.eventhubs_maximum_throughput_units, var.eventhubs_capacity) : null
  local_authentication_enabled  = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true
  tags                          = local.tags
}

resource "azurerm_eventhub" "watch_events" {
  name              = var.watch_events_hub_name
  namespace_id      = azurerm_eventhub_namespace.main.id
  partition_count   = var.watch_events_partitions
  message_retention = var.watch_events_retention_days

  lifecycle {
    precondition {
      condition     = var.eventhubs_sku == "Premium" || var.watch_events_retention_days <= 7
      error_message = "A Standard namespace keeps events at most 7 days: set watch_events_retention_days = 7 or eventhubs_sku = \"Premium\"."
    }
  }
}

resource "azurerm_eventhub_consumer_group" "ingest" {
  name                = var.watch_events_consumer_group
  namespace_name      = azurerm_eventhub_namespace.main.name
  eventhub_name       = azurerm_eventhub.watch_events.name
  resource_group_name = azurerm_resource_group.main.name
  user_metadata       = "movielake ingest_watch_events (Azure Functions)"
}
