# Logs: Log Analytics (everything ends here), Application Insights on top of it for the Function
# App's traces and invocations, and diagnostic settings for every resource that has logs.

resource "azurerm_log_analytics_workspace" "main" {
  name                = local.names.log_analytics
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_application_insights" "main" {
  name                         = local.names.app_insights
  resource_group_name          = azurerm_resource_group.main.name
  location                     = azurerm_resource_group.main.location
  workspace_id                 = azurerm_log_analytics_workspace.main.id
  application_type             = "other"
  local_authentication_enabled = false
  tags                         = local.tags
}

locals {
  # Every resource with diagnostic logs, and its metric category. All their logs go (category
  # group allLogs); storage logs live on the blob service: every read, write and delete of a
  # blob, by whom and with which identity.
  diagnostics = {
    lake_blobs        = { target = "${azurerm_storage_account.lake.id}/blobServices/default", metrics = "Transaction" }
    host_blobs        = { target = "${azurerm_storage_account.host.id}/blobServices/default", metrics = "Transaction" }
    eventhubs         = { target = azurerm_eventhub_namespace.main.id, metrics = "AllMetrics" }
    bronze_topic      = { target = azurerm_eventgrid_topic.bronze_landed.id, metrics = "AllMetrics" }
    lake_system_topic = { target = azurerm_eventgrid_system_topic.lake.id, metrics = "AllMetrics" }
    key_vault         = { target = azurerm_key_vault.main.id, metrics = "AllMetrics" }
  }
}

resource "azurerm_monitor_diagnostic_setting" "main" {
  for_each                   = local.diagnostics
  name                       = "to-log-analytics"
  target_resource_id         = each.value.target
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category_group = "allLogs"
  }

  enabled_metric {
    category = each.value.metrics
  }
}

# The Function App's own log stream (host and handler logs), beside Application Insights.
resource "azurerm_monitor_diagnostic_setting" "function_app" {
  name                       = "to-log-analytics"
  target_resource_id         = azurerm_function_app_flex_consumption.app.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "FunctionAppLogs"
  }

  enabled_metric {
    category = "AllMetrics"
  }
}
