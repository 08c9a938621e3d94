# Storage: the lake (ADLS Gen2, hierarchical namespace) and the host account (Functions host
# state, the deployment package, Event Grid dead letters). Both: no shared keys, no anonymous
# access, TLS 1.2, blob and container soft delete.

resource "azurerm_storage_account" "lake" {
  # checkov:skip=CKV_AZURE_35:The Function App has no VNet integration (Flex Consumption without a VNet) and reaches the lake over its public endpoint; access is Azure AD only (shared keys off), scoped by RBAC.
  # checkov:skip=CKV_AZURE_59:Same reason: the public endpoint stays on for the Function App and analysts' tools (Synapse serverless, Databricks, DuckDB); every request needs an Azure AD token.
  # checkov:skip=CKV2_AZURE_33:No VNet in this design, so no private endpoint; see CKV_AZURE_35.
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys are enough for this data (public film metadata and pseudonymous watch events); customer-managed keys would add a Key Vault key and its rotation.
  # checkov:skip=CKV_AZURE_33:The lake has no queues; queue logging does not apply.
  name                              = local.names.lake_account
  resource_group_name               = azurerm_resource_group.main.name
  location                          = azurerm_resource_group.main.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.lake_replication_type
  is_hns_enabled                    = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  sftp_enabled                      = false
  infrastructure_encryption_enabled = true
  tags                              = local.tags

  blob_properties {
    delete_retention_policy {
      days = var.blob_soft_delete_days
    }
    container_delete_retention_policy {
      days = var.container_soft_delete_days
    }
  }

  sas_policy {
    expiration_period = "1.00:00:00"
  }
}

resource "azurerm_storage_container" "lake" {
  # checkov:skip=CKV2_AZURE_21:Blob read logging is on for the whole account through the diagnostic setting on its blob service (monitoring.tf).
  for_each              = local.lake_containers
  name                  = each.key
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"
}

# Bronze is written once and read again only for replays and backfills: move it to cheaper tiers.
resource "azurerm_storage_management_policy" "lake" {
  storage_account_id = azurerm_storage_account.lake.id

  rule {
    name    = "bronze-to-cool-then-cold"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["bronze/"]
    }
    actions {
      base_blob {
        tier_to_cool_after_days_since_creation_greater_than = var.bronze_cool_after_days
        tier_to_cold_after_days_since_creation_greater_than = var.bronze_cold_after_days
      }
    }
  }

  # The dedupe ledger only matters inside its window (MOVIELAKE_DEDUPE_WINDOW_HOURS); older
  # hourly buckets are never read again.
  rule {
    name    = "expire-dedupe-ledger"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["ops/ledger/"]
    }
    actions {
      base_blob {
        delete_after_days_since_creation_greater_than = var.ledger_retention_days
      }
    }
  }
}

resource "azurerm_storage_account" "host" {
  # checkov:skip=CKV_AZURE_35:The Function App has no VNet integration; the host reaches its storage over the public endpoint with its managed identity (shared keys off).
  # checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35.
  # checkov:skip=CKV2_AZURE_33:No VNet in this design, so no private endpoint.
  # checkov:skip=CKV2_AZURE_1:Microsoft-managed keys: the account holds host state, the deployment package and dead letters, all rebuildable.
  # checkov:skip=CKV_AZURE_33:The host uses blobs only (no queue-triggered Functions); queue logging does not apply.
  # checkov:skip=CKV_AZURE_206:Replication is a variable (host_replication_type, ZRS by default); everything here can be rebuilt from the repository and the lake.
  name                              = local.names.host_account
  resource_group_name               = azurerm_resource_group.main.name
  location                          = azurerm_resource_group.main.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.host_replication_type
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true
  tags                              = local.tags

  blob_properties {
    versioning_enabled            = true
    change_feed_enabled           = true
    change_feed_retention_in_days = 30
    delete_retention_policy {
      days = var.blob_soft_delete_days
    }
    container_delete_retention_policy {
      days = var.container_soft_delete_days
    }
  }

  sas_policy {
    expiration_period = "1.00:00:00"
  }
}

resource "azurerm_storage_container" "deployment" {
  # checkov:skip=CKV2_AZURE_21:Blob read logging is on for the whole account through the diagnostic setting on its blob service (monitoring.tf).
  name                  = local.deployment_container
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "deadletter" {
  # checkov:skip=CKV2_AZURE_21:Blob read logging is on for the whole account through the diagnostic setting on its blob service (monitoring.tf).
  name                  = local.deadletter_container
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

# Versioning keeps every deployment package and host blob ever overwritten: expire the old versions.
resource "azurerm_storage_management_policy" "host" {
  storage_account_id = azurerm_storage_account.host.id

  rule {
    name    = "expire-old-versions"
    enabled = true
    filters {
      blob_types = ["blockBlob"]
    }
    actions {
      version {
        delete_after_days_since_creation = var.host_versions_retention_days
      }
    }
  }
}
