# Inputs. dev.tfvars and prod.tfvars are complete examples.

# ---------------------------------------------------------------------------------------------
# Where and what
# ---------------------------------------------------------------------------------------------

variable "subscription_id" {
  description = "Azure subscription to deploy into (the azurerm provider requires it explicitly)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "subscription_id must be a subscription GUID (az account show --query id -o tsv)."
  }
}

variable "location" {
  description = "Azure region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations)."
  type        = string
  default     = "westeurope"
}

variable "name_prefix" {
  description = "Prefix of every resource name: 3 to 11 lowercase letters or digits, starting with a letter (storage account names allow nothing else)."
  type        = string
  default     = "movielake"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,10}$", var.name_prefix))
    error_message = "name_prefix must be 3 to 11 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name, part of every resource name: 2 to 5 lowercase letters or digits (dev, test, prod)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,4}$", var.environment))
    error_message = "environment must be 2 to 5 lowercase letters or digits, starting with a letter."
  }
}

variable "name_suffix" {
  description = "Suffix that makes the globally unique names (storage accounts, Key Vault, Function App) unique: 4 to 6 lowercase letters or digits. Default: derived from the subscription and environment, stable across applies."
  type        = string
  default     = null

  validation {
    condition     = var.name_suffix == null || can(regex("^[a-z0-9]{4,6}$", coalesce(var.name_suffix, "x")))
    error_message = "name_suffix must be 4 to 6 lowercase letters or digits."
  }
}

variable "tags" {
  description = "Tags added to every resource (merged over project and environment tags)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Storage: the lake (ADLS Gen2) and the host account (Functions host, deployment package,
# Event Grid dead letters)
# ---------------------------------------------------------------------------------------------

variable "lake_replication_type" {
  description = "Replication of the lake account. GZRS (zone- and geo-redundant) by default: the lake is the system of record."
  type        = string
  default     = "GZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.lake_replication_type)
    error_message = "lake_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "host_replication_type" {
  description = "Replication of the host account (host state, deployment packages, dead letters; all rebuildable)."
  type        = string
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.host_replication_type)
    error_message = "host_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "blob_soft_delete_days" {
  description = "Days a deleted or overwritten blob can be restored (both accounts)."
  type        = number
  default     = 14

  validation {
    condition     = var.blob_soft_delete_days >= 7 && var.blob_soft_delete_days <= 365
    error_message = "blob_soft_delete_days must be between 7 and 365."
  }
}

variable "container_soft_delete_days" {
  description = "Days a deleted container can be restored (both accounts)."
  type        = number
  default     = 14

  validation {
    condition     = var.container_soft_delete_days >= 7 && var.container_soft_delete_days <= 365
    error_message = "container_soft_delete_days must be between 7 and 365."
  }
}

variable "bronze_cool_after_days" {
  description = "Bronze blobs move to the Cool tier this many days after they were written (bronze is immutable: written once, read for replays)."
  type        = number
  default     = 30

  validation {
    condition     = var.bronze_cool_after_days >= 1
    error_message = "bronze_cool_after_days must be at least 1."
  }
}

variable "bronze_cold_after_days" {
  description = "Bronze blobs move to the Cold tier this many days after they were written; must be later than the move to Cool."
  type        = number
  default     = 90

  validation {
    condition     = var.bronze_cold_after_days >= 30
    error_message = "bronze_cold_after_days must be at least 30 (Cool has a 30-day minimum)."
  }
}

variable "host_versions_retention_days" {
  description = "Days earlier versions of host-account blobs are kept (the host overwrites its checkpoints and leases often, so each overwrite leaves a version)."
  type        = number
  default     = 7

  validation {
    condition     = var.host_versions_retention_days >= 1
    error_message = "host_versions_retention_days must be at least 1."
  }
}

# ---------------------------------------------------------------------------------------------
# Event Hubs: the watch-events stream
# ---------------------------------------------------------------------------------------------

variable "eventhubs_sku" {
  description = "Event Hubs namespace tier. Standard or Premium: Basic has neither consumer groups nor 7-day retention."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Standard", "Premium"], var.eventhubs_sku)
    error_message = "eventhubs_sku must be Standard or Premium."
  }
}

variable "eventhubs_capacity" {
  description = "Throughput units (Standard, 1 to 40) or processing units (Premium, 1 to 16) of the namespace."
  type        = number
  default     = 1

  validation {
    condition     = var.eventhubs_capacity >= 1 && var.eventhubs_capacity <= 40
    error_message = "eventhubs_capacity must be between 1 and 40."
  }
}

variable "eventhubs_auto_inflate" {
  description = "Let a Standard namespace add throughput units under load, up to eventhubs_maximum_throughput_units (ignored on Premium)."
  type        = bool
  default     = true
}

variable "eventhubs_maximum_throughput_units" {
  description = "Upper bound for auto-inflate (Standard only); at least eventhubs_capacity."
  type        = number
  default     = 4

  validation {
    condition     = var.eventhubs_maximum_throughput_units >= 1 && var.eventhubs_maximum_throughput_units <= 40
    error_message = "eventhubs_maximum_throughput_units must be between 1 and 40."
  }
}

variable "watch_events_hub_name" {
  description = "Name of the watch-events hub (the Function reads it from WATCH_EVENTS_HUB)."
  type        = string
  default     = "watch-events"

  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$", var.watch_events_hub_name))
    error_message = "watch_events_hub_name must be 1 to 256 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "watch_events_partitions" {
  description = "Partitions of the watch-events hub (parallelism of ingest_watch_events; fixed after creation on Standard)."
  type        = number
  default     = 4

  validation {
    condition     = var.watch_events_partitions >= 1 && var.watch_events_partitions <= 32
    error_message = "watch_events_partitions must be between 1 and 32."
  }
}

variable "watch_events_retention_days" {
  description = "Days the hub keeps events: at least 7, so a week-long outage of the Function loses nothing (Standard allows up to 7, Premium up to 90)."
  type        = number
  default     = 7

  validation {
    condition     = var.watch_events_retention_days >= 7 && var.watch_events_retention_days <= 90
    error_message = "watch_events_retention_days must be between 7 and 90."
  }
}

variable "watch_events_consumer_group" {
  description = "Consumer group of the Function on the watch-events hub (WATCH_EVENTS_CONSUMER_GROUP); its own, never $Default."
  type        = string
  default     = "movielake-ingest"

  validation {
    condition     = var.watch_events_consumer_group != "$Default" && can(regex("^[a-zA-Z0-9][a-zA-Z0-9._-]{0,49}$", var.watch_events_consumer_group))
    error_message = "watch_events_consumer_group must be 1 to 50 letters, digits, '.', '_' or '-', and not $Default."
  }
}

# ---------------------------------------------------------------------------------------------
# Function App (Flex Consumption)
# ---------------------------------------------------------------------------------------------

variable "function_instance_memory_mb" {
  description = "Memory of each Function instance, in MB. 2048 by default: a full IMDb file is streamed, never held whole."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "function_maximum_instance_count" {
  description = "Most on-demand instances the Function App scales out to (per function group): 40 to 1000."
  type        = number
  default     = 40

  # Flex Consumption: "The lowest maximum scale is currently `40`. The highest currently supported
  # value is `1000`." https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations
  # Values under 40 are being rolled out region by region (Azure/azure-functions-host#10523; the
  # event-driven-scaling article now says 1, and azurerm accepts 1..1000 since
  # hashicorp/terraform-provider-azurerm#31392), but 40 is the floor every region and every
  # version of the docs accepts. infra/checks/consistency_check.py holds every *.tfvars to this.
  validation {
    condition     = var.function_maximum_instance_count >= 40 && var.function_maximum_instance_count <= 1000
    error_message = "function_maximum_instance_count must be between 40 and 1000 (the range Flex Consumption accepts in every region)."
  }
}

variable "custom_handler_runtime_version" {
  description = "Runtime version of the Flex Consumption 'custom' runtime (the custom handler stack)."
  type        = string
  default     = "1.0"
}

variable "dedupe_window_hours" {
  description = "MOVIELAKE_DEDUPE_WINDOW_HOURS: how long a producer's duplicate watch event is recognised by its key."
  type        = number
  default     = 24

  validation {
    condition     = var.dedupe_window_hours >= 1 && var.dedupe_window_hours <= 720
    error_message = "dedupe_window_hours must be between 1 and 720 (the binary refuses anything else)."
  }
}

variable "ledger_retention_days" {
  description = "Days the hourly dedupe-ledger buckets (ops/ledger/) are kept; must cover dedupe_window_hours, with a margin for late batches."
  type        = number
  default     = 3

  validation {
    condition     = var.ledger_retention_days >= 2 && var.ledger_retention_days <= 60
    error_message = "ledger_retention_days must be between 2 and 60."
  }
}

check "ledger_outlives_the_dedupe_window" {
  assert {
    condition     = var.ledger_retention_days * 24 > var.dedupe_window_hours
    error_message = "ledger_retention_days must exceed the dedupe window, or duplicates inside the window are forgotten."
  }
}

variable "poison_after_attempts" {
  description = "MOVIELAKE_POISON_AFTER_ATTEMPTS: failed attempts of one Event Hub batch after which it is landed whole in quarantine (stage poison) so that its partition moves on; 0 retries it forever."
  type        = number
  default     = 10

  validation {
    condition     = var.poison_after_attempts >= 0 && var.poison_after_attempts <= 1000 && floor(var.poison_after_attempts) == var.poison_after_attempts
    error_message = "poison_after_attempts must be a whole number between 0 and 1000."
  }
}

variable "log_filter" {
  description = "MOVIELAKE_LOG: the handler's log filter (tracing env-filter syntax, e.g. info or movielake=debug,info)."
  type        = string
  default     = "info"
}

# ---------------------------------------------------------------------------------------------
# Table maintenance (the maintain_tables Function, see README "Table maintenance")
# ---------------------------------------------------------------------------------------------

variable "maintain_tables_schedule" {
  description = "NCRONTAB schedule (six fields, UTC) of maintain_tables: MAINTAIN_TABLES_SCHEDULE. Default: every hour at :15. https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#cron-expressions"
  type        = string
  default     = "0 15 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.maintain_tables_schedule))) == 6
    error_message = "maintain_tables_schedule must be a six-field NCRONTAB expression: second minute hour day month weekday."
  }
}

variable "maintain_target_file_mb" {
  description = "MOVIELAKE_MAINTAIN_TARGET_FILE_MB: the size, in MiB, compaction rewrites small files into."
  type        = number
  default     = 128

  validation {
    condition     = var.maintain_target_file_mb >= 1 && var.maintain_target_file_mb <= 1024 && floor(var.maintain_target_file_mb) == var.maintain_target_file_mb
    error_message = "maintain_target_file_mb must be a whole number between 1 and 1024 (the binary refuses anything else)."
  }
}

variable "maintain_retention_hours" {
  description = "MOVIELAKE_MAINTAIN_RETENTION_HOURS: how long VACUUM keeps files that left a table (time travel) and files no commit named yet (writers at work). At least 1."
  type        = number
  default     = 168

  validation {
    condition     = var.maintain_retention_hours >= 1 && var.maintain_retention_hours <= 8760 && floor(var.maintain_retention_hours) == var.maintain_retention_hours
    error_message = "maintain_retention_hours must be a whole number of hours from 1 (the binary refuses less: ingest writes its files before committing them) to 8760."
  }
}

# ---------------------------------------------------------------------------------------------
# TMDB (used once the pull_tmdb_lists Function exists, see locals.tf)
# ---------------------------------------------------------------------------------------------

variable "tmdb_schedule" {
  description = "NCRONTAB schedule (six fields, UTC) of pull_tmdb_lists: TMDB_SCHEDULE."
  type        = string
  default     = "0 0 3 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.tmdb_schedule))) == 6
    error_message = "tmdb_schedule must be a six-field NCRONTAB expression: second minute hour day month weekday."
  }
}

variable "tmdb_token_secret_name" {
  description = "Name of the Key Vault secret holding the TMDB API read access token (set by an operator, never by Terraform: see docs/deploy.md)."
  type        = string
  default     = "tmdb-api-token"

  validation {
    condition     = can(regex("^[0-9a-zA-Z-]{1,127}$", var.tmdb_token_secret_name))
    error_message = "tmdb_token_secret_name must be 1 to 127 letters, digits or '-'."
  }
}

variable "key_vault_secret_officers" {
  description = "Object ids of the people or groups allowed to set the TMDB secret (Key Vault Secrets Officer). Empty: grant it yourself."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------
# Event Grid
# ---------------------------------------------------------------------------------------------

variable "enable_event_grid_subscriptions" {
  description = "Create the Event Grid subscriptions that call bronze_to_silver. Event Grid checks the endpoint when a subscription is created, so the first apply runs with false, the code is deployed, then apply again with true. A subscription is created only once its Function exists in functions/."
  type        = bool
  default     = false
}

variable "event_grid_max_delivery_attempts" {
  description = "Delivery attempts of an event to bronze_to_silver before it is dead-lettered."
  type        = number
  default     = 30

  validation {
    condition     = var.event_grid_max_delivery_attempts >= 1 && var.event_grid_max_delivery_attempts <= 30
    error_message = "event_grid_max_delivery_attempts must be between 1 and 30."
  }
}

variable "event_grid_event_ttl_minutes" {
  description = "Minutes Event Grid keeps retrying an event before it is dead-lettered."
  type        = number
  default     = 1440

  validation {
    condition     = var.event_grid_event_ttl_minutes >= 1 && var.event_grid_event_ttl_minutes <= 1440
    error_message = "event_grid_event_ttl_minutes must be between 1 and 1440."
  }
}

# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Days Log Analytics (and so Application Insights) keeps logs."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

# ---------------------------------------------------------------------------------------------
# The platform's SQL database (the pull_subscriptions Function, see README "The SQL source").
# The database is the platform's: this configuration does not create it. Leave sql_server empty
# and the Function runs, says there is nothing to pull, and succeeds.
# ---------------------------------------------------------------------------------------------

variable "pull_subscriptions_schedule" {
  description = "NCRONTAB schedule (six fields, UTC) of pull_subscriptions: PULL_SUBSCRIPTIONS_SCHEDULE. Default: every 15 minutes."
  type        = string
  default     = "0 */15 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.pull_subscriptions_schedule))) == 6
    error_message = "pull_subscriptions_schedule must be a six-field NCRONTAB expression: second minute hour day month weekday."
  }
}

variable "sql_dialect" {
  description = "The database's dialect: sqlserver (Azure SQL Database, the platform's; Entra token, TLS, row versions) or postgres (Azure Database for PostgreSQL; Entra token, sslmode=require)."
  type        = string
  default     = "sqlserver"

  validation {
    condition     = contains(["sqlserver", "postgres"], var.sql_dialect)
    error_message = "sql_dialect must be sqlserver or postgres."
  }
}

variable "sql_server" {
  description = "The database server's host name (e.g. myserver.database.windows.net, myserver.postgres.database.azure.com); empty: no SQL source."
  type        = string
  default     = ""
}

variable "sql_port" {
  description = "The database server's port; null: the dialect's (1433 for sqlserver, 5432 for postgres)."
  type        = number
  default     = null
}

variable "sql_database" {
  description = "The database holding the users and subscriptions tables."
  type        = string
  default     = "platform"
}

variable "sql_login" {
  description = "postgres only: the database role the Function logs in as, the Entra principal created in the database (docs/deploy.md). Empty: the app's user-assigned identity's name. (Azure SQL takes the identity from the token.)"
  type        = string
  default     = ""
}

variable "function_subnet_id" {
  description = "A subnet (delegated to Microsoft.App/environments) for the Function App's virtual network integration, to reach a database behind a private endpoint or firewall. Null: no integration (the database must then accept the app's outbound addresses)."
  type        = string
  default     = null
}
