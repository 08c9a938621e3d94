# The Function App: Flex Consumption (FC1), Linux, runtime "custom" (the movielake binary is the
# custom handler: host.json starts `movielake serve`). The code is published separately as a zip
# (scripts/package.sh, docs/deploy.md) into the deployment container of the host account.

resource "azurerm_service_plan" "main" {
  # checkov:skip=CKV_AZURE_212:A Flex Consumption (FC1) plan has no instance count: instances are allocated per Function App on demand (maximum_instance_count on the app).
  # checkov:skip=CKV_AZURE_225:Zone redundancy of Flex Consumption is not set on an FC1 plan through azurerm; an instance lost with its zone is replaced on demand, and the state lives in the lake (GZRS) and Event Hubs, so a zone outage delays work and loses none.
  name                = local.names.plan
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

resource "azurerm_function_app_flex_consumption" "app" {
  name                = local.names.function_app
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.main.id

  runtime_name           = "custom"
  runtime_version        = var.custom_handler_runtime_version
  instance_memory_in_mb  = var.function_instance_memory_mb
  maximum_instance_count = var.function_maximum_instance_count

  # The deployment package, read with the user-assigned identity.
  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = azurerm_user_assigned_identity.app.id

  # Outbound through the platform's network to reach the SQL database (null: none).
  virtual_network_subnet_id = var.function_subnet_id

  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false

  identity {
    type         = "SystemAssigned, UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app.id]
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
  }

  app_settings = local.app_settings
  tags         = local.tags

  # The identity's roles must exist before the host starts and reads its storage and hub.
  depends_on = [
    azurerm_role_assignment.app_host_storage,
    azurerm_role_assignment.app_lake,
    azurerm_role_assignment.app_eventhub_receiver,
  ]
}
