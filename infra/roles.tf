# Role assignments, least privilege: each identity gets the one data-plane role it needs, on the
# narrowest scope that works.

locals {
  app_principal = azurerm_user_assigned_identity.app.principal_id
}

# --- user-assigned identity: the movielake binary -----------------------------------------------

# Read and write the lake (bronze put-if-absent, silver, quarantine, gold, ops). No Owner: the
# code never changes ACLs; the containers are created by Terraform.
resource "azurerm_role_assignment" "app_lake" {
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = local.app_principal
  principal_type       = "ServicePrincipal"
}

# Publish `movielake.bronze.landed` events, to this topic only.
resource "azurerm_role_assignment" "app_bronze_topic_sender" {
  scope                = azurerm_eventgrid_topic.bronze_landed.id
  role_definition_name = "EventGrid Data Sender"
  principal_id         = local.app_principal
  principal_type       = "ServicePrincipal"
}

# --- user-assigned identity: the Functions host -------------------------------------------------

# AzureWebJobsStorage (host keys, leases, Event Hub checkpoints) and the deployment package:
# the identity-based host storage connection needs Storage Blob Data Owner on the account.
resource "azurerm_role_assignment" "app_host_storage" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = local.app_principal
  principal_type       = "ServicePrincipal"
}

# The Event Hub trigger (EventHubConnection): receive from the watch-events hub only.
resource "azurerm_role_assignment" "app_eventhub_receiver" {
  scope                = azurerm_eventhub.watch_events.id
  role_definition_name = "Azure Event Hubs Data Receiver"
  principal_id         = local.app_principal
  principal_type       = "ServicePrincipal"
}

# Telemetry with Azure AD auth (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource "azurerm_role_assignment" "app_telemetry" {
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = local.app_principal
  principal_type       = "ServicePrincipal"
}

# --- system-assigned identity: Key Vault references ---------------------------------------------

resource "azurerm_role_assignment" "app_key_vault_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_function_app_flex_consumption.app.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

# --- people who set the TMDB token --------------------------------------------------------------

resource "azurerm_role_assignment" "secret_officers" {
  for_each             = toset(var.key_vault_secret_officers)
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = each.value
}

# --- Event Grid topics: dead letters -------------------------------------------------------------

resource "azurerm_role_assignment" "lake_topic_deadletter" {
  scope                = azurerm_storage_container.deadletter.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_system_topic.lake.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "bronze_topic_deadletter" {
  scope                = azurerm_storage_container.deadletter.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_topic.bronze_landed.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
