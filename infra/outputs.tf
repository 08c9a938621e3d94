# What the deploy steps and the operators need (docs/deploy.md uses these names).

output "resource_group_name" {
  description = "Resource group holding everything."
  value       = azurerm_resource_group.main.name
}

output "function_app_name" {
  description = "The Function App: publish the package with `az functionapp deployment source config-zip -g <rg> -n <this> --src movielake.zip`."
  value       = azurerm_function_app_flex_consumption.app.name
}

output "functions" {
  description = "The Functions found in functions/ when this was applied (their settings and subscriptions exist)."
  value       = sort(tolist(local.functions))
}

output "lake_url" {
  description = "MOVIELAKE_LAKE: the lake's blob endpoint (browse it with `az storage blob list --auth-mode login`)."
  value       = local.shared_settings.MOVIELAKE_LAKE
}

output "lake_account_name" {
  description = "The lake storage account (ADLS Gen2)."
  value       = azurerm_storage_account.lake.name
}

output "lake_containers" {
  description = "The lake's containers."
  value       = sort(tolist(local.lake_containers))
}

output "host_account_name" {
  description = "The host storage account (Functions host state, deployment package, Event Grid dead letters)."
  value       = azurerm_storage_account.host.name
}

output "deadletter_container" {
  description = "Where Event Grid puts events it could not deliver to bronze_to_silver."
  value       = azurerm_storage_container.deadletter.name
}

output "app_identity_client_id" {
  description = "Client id of the user-assigned identity (AZURE_CLIENT_ID of the app)."
  value       = azurerm_user_assigned_identity.app.client_id
}

output "app_identity_principal_id" {
  description = "Object id of the user-assigned identity (for extra role assignments, e.g. letting it send test events)."
  value       = azurerm_user_assigned_identity.app.principal_id
}

output "eventhubs_namespace" {
  description = "Fully qualified Event Hubs namespace (producers send watch events here)."
  value       = local.function_settings.ingest_watch_events.EventHubConnection__fullyQualifiedNamespace
}

output "watch_events_hub" {
  description = "The watch-events hub."
  value       = azurerm_eventhub.watch_events.name
}

output "watch_events_consumer_group" {
  description = "The Function's consumer group on the watch-events hub."
  value       = azurerm_eventhub_consumer_group.ingest.name
}

output "bronze_landed_topic_endpoint" {
  description = "Endpoint of the custom Event Grid topic for movielake.bronze.landed."
  value       = azurerm_eventgrid_topic.bronze_landed.endpoint
}

output "event_grid_subscriptions" {
  description = "Event Grid subscriptions that exist (none until enable_event_grid_subscriptions = true and functions/bronze_to_silver exists)."
  value = concat(
    azurerm_eventgrid_system_topic_event_subscription.bronze_files[*].name,
    azurerm_eventgrid_event_subscription.bronze_landed[*].name,
  )
}

output "key_vault_name" {
  description = "Key Vault holding the TMDB token."
  value       = azurerm_key_vault.main.name
}

output "tmdb_token_secret_name" {
  description = "Name of the TMDB token secret: `az keyvault secret set --vault-name <key_vault_name> --name <this> --file token.txt`."
  value       = var.tmdb_token_secret_name
}

output "application_insights_name" {
  description = "Application Insights component (Function invocations, the handler's logs)."
  value       = azurerm_application_insights.main.name
}

output "log_analytics_workspace_id" {
  description = "Workspace (customer) id of Log Analytics, for `az monitor log-analytics query -w <this>`."
  value       = azurerm_log_analytics_workspace.main.workspace_id
}

output "app_identity_name" {
  description = "The user-assigned identity's name: the database role or user pull_subscriptions logs in as (docs/deploy.md, step 3b)."
  value       = azurerm_user_assigned_identity.app.name
}
