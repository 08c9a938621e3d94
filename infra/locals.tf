# Names, the Functions the code has, and the Function App's app settings.

data "azurerm_client_config" "current" {}

locals {
  suffix = coalesce(var.name_suffix, substr(sha1("${var.subscription_id}/${var.name_prefix}/${var.environment}"), 0, 6))
  base   = "${var.name_prefix}-${var.environment}"

  names = {
    resource_group    = "rg-${local.base}"
    identity          = "id-${local.base}"
    lake_account      = "${var.name_prefix}${var.environment}lk${local.suffix}"
    host_account      = "${var.name_prefix}${var.environment}fn${local.suffix}"
    eventhubs         = "evhns-${local.base}-${local.suffix}"
    bronze_topic      = "evgt-${local.base}-bronze-landed"
    lake_system_topic = "evgst-${local.base}-lake"
    key_vault         = "kv${var.name_prefix}${var.environment}${local.suffix}"
    log_analytics     = "log-${local.base}"
    app_insights      = "appi-${local.base}"
    plan              = "asp-${local.base}"
    function_app      = "func-${local.base}-${local.suffix}"
  }

  tags = merge({ project = "movielake", environment = var.environment, managed_by = "terraform" }, var.tags)

  # The lake containers the code writes (crates/movielake/src/config.rs, CONTAINERS).
  lake_containers = toset(["bronze", "silver", "quarantine", "gold", "ops"])

  # Containers of the host account.
  deployment_container = "app-package"
  deadletter_container = "eventgrid-deadletter"

  # The Functions the code has: one folder per Function in functions/, each served by the
  # handler (scripts/check_infra.sh checks that the two agree). Settings and Event Grid
  # subscriptions of a Function are declared below but only exist once its folder does.
  sql_login = var.sql_login != "" ? var.sql_login : azurerm_user_assigned_identity.app.name
  sql_port  = coalesce(var.sql_port, var.sql_dialect == "sqlserver" ? 1433 : 5432)
  # No password in either: the handler signs in with an Entra token of the app's identity
  # (scopes https://database.windows.net/.default and https://ossrdbms-aad.database.windows.net/.default);
  # TLS with the server's certificate verified in both.
  sql_url = {
    sqlserver = "sqlserver://${var.sql_server}:${local.sql_port}/${var.sql_database}"
    postgres  = "postgres://${local.sql_login}@${var.sql_server}:${local.sql_port}/${var.sql_database}?sslmode=require"
  }

  functions = toset([for f in fileset("${path.module}/../functions", "*/function.json") : dirname(f)])

  # ---------------------------------------------------------------------------------------------
  # App settings: exactly the settings the code reads, plus what the platform itself needs.
  # infra/checks/consistency_check.py evaluates this structure; keep its shape:
  #   platform_settings  read by the Functions host, not by our code (each allowed by the check)
  #   shared_settings    read by the movielake binary whatever Function runs
  #   function_settings  per Function: set only when functions/<name>/ exists
  #   planned_settings   declared, not set: no code reads them yet
  # ---------------------------------------------------------------------------------------------

  platform_settings = {
    # Host storage through the user-assigned identity, no keys. azurerm writes an
    # AzureWebJobsStorage connection string with an empty AccountKey for Flex Consumption apps
    # whatever storage_authentication_type says (hashicorp/terraform-provider-azurerm#29693,
    # #30732); a user value of the same name replaces it, and an empty one makes the host use
    # the AzureWebJobsStorage__* identity settings. The provider hides AzureWebJobsStorage when
    # reading the app back, so every plan shows it being set again: expected, harmless. An empty
    # value was reported to break host start-up once (Azure/azure-functions-host#11796, fixed
    # there); the fallback, removing the key with azapi, is in docs/deploy.md ("Host storage").
    # Identity-based host storage: https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
    AzureWebJobsStorage              = ""
    AzureWebJobsStorage__accountName = azurerm_storage_account.host.name
    AzureWebJobsStorage__credential  = "managedidentity"
    AzureWebJobsStorage__clientId    = azurerm_user_assigned_identity.app.client_id
    # Telemetry to Application Insights with Azure AD auth (local auth is off on the component).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "ClientId=${azurerm_user_assigned_identity.app.client_id};Authorization=AAD"
  }

  shared_settings = {
    # The lake: Azure Blob endpoint of the ADLS Gen2 account, reached with the managed identity.
    MOVIELAKE_LAKE = trimsuffix(azurerm_storage_account.lake.primary_blob_endpoint, "/")
    # The user-assigned identity the binary takes its tokens from (crates/movielake/src/lake/).
    AZURE_CLIENT_ID               = azurerm_user_assigned_identity.app.client_id
    MOVIELAKE_DEDUPE_WINDOW_HOURS = tostring(var.dedupe_window_hours)
    MOVIELAKE_LOG                 = var.log_filter
    # Failed attempts of one Event Hub batch before it is landed whole in quarantine (stage poison).
    MOVIELAKE_POISON_AFTER_ATTEMPTS = tostring(var.poison_after_attempts)
  }

  function_settings = {
    ingest_watch_events = {
      # %WATCH_EVENTS_HUB% and %WATCH_EVENTS_CONSUMER_GROUP% in function.json; connection
      # "EventHubConnection" through the user-assigned identity.
      WATCH_EVENTS_HUB                            = azurerm_eventhub.watch_events.name
      WATCH_EVENTS_CONSUMER_GROUP                 = azurerm_eventhub_consumer_group.ingest.name
      EventHubConnection__fullyQualifiedNamespace = "${azurerm_eventhub_namespace.main.name}.servicebus.windows.net"
      EventHubConnection__credential              = "managedidentity"
      EventHubConnection__clientId                = azurerm_user_assigned_identity.app.client_id
    }
    pull_tmdb_lists = {
      # Timer schedule (%TMDB_SCHEDULE%) and the TMDB token as a Key Vault reference (resolved by
      # the platform with the system-assigned identity).
      TMDB_SCHEDULE  = var.tmdb_schedule
      TMDB_API_TOKEN = "@Microsoft.KeyVault(VaultName=${azurerm_key_vault.main.name};SecretName=${var.tmdb_token_secret_name})"
      # Where the pull announces `movielake.bronze.landed` once pages are durable; the app's
      # identity has EventGrid Data Sender on the topic, whose subscription feeds bronze_to_silver.
      EVENTGRID_TOPIC_ENDPOINT = azurerm_eventgrid_topic.bronze_landed.endpoint
    }
    # Event Grid trigger: no setting of its own.
    bronze_to_silver = {}
    pull_subscriptions = {
      # Timer schedule (%PULL_SUBSCRIPTIONS_SCHEDULE% in function.json, NCRONTAB in UTC).
      PULL_SUBSCRIPTIONS_SCHEDULE = var.pull_subscriptions_schedule
      # The database, without a password: the Function's identity is its login (docs/deploy.md).
      # Empty when var.sql_server is: the Function then says there is nothing to pull.
      MOVIELAKE_SQL_DATABASE = var.sql_server == "" ? "" : local.sql_url[var.sql_dialect]
    }
    maintain_tables = {
      # Timer schedule (%MAINTAIN_TABLES_SCHEDULE% in function.json, NCRONTAB in UTC).
      MAINTAIN_TABLES_SCHEDULE = var.maintain_tables_schedule
      # Compaction's target file size and VACUUM's retention; `movielake maintain` reads the same.
      MOVIELAKE_MAINTAIN_TARGET_FILE_MB  = tostring(var.maintain_target_file_mb)
      MOVIELAKE_MAINTAIN_RETENTION_HOURS = tostring(var.maintain_retention_hours)
    }
  }

  # Declared for code that does not read them yet, and NOT set on the app (nothing would read
  # them). When the code starts reading one, scripts/check_infra.sh says to move it into
  # shared_settings or function_settings.
  planned_settings = {}

  app_settings = merge(
    local.platform_settings,
    local.shared_settings,
    [for name, settings in local.function_settings : settings if contains(local.functions, name)]...
  )
}
