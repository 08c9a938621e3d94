# Production: zone- and geo-redundant lake, room to scale. terraform apply -var-file=prod.tfvars
subscription_id = "00000000-0000-0000-0000-000000000000" # your subscription: az account show --query id -o tsv
environment     = "prod"
location        = "westeurope"

lake_replication_type      = "GZRS"
host_replication_type      = "ZRS"
blob_soft_delete_days      = 30
container_soft_delete_days = 30
bronze_cool_after_days     = 30
bronze_cold_after_days     = 90

eventhubs_sku                      = "Standard"
eventhubs_capacity                 = 2
eventhubs_auto_inflate             = true
eventhubs_maximum_throughput_units = 10
watch_events_partitions            = 8
watch_events_retention_days        = 7

function_instance_memory_mb     = 2048
function_maximum_instance_count = 100

log_filter         = "info"
log_retention_days = 90

# Object ids of the people or group who set the TMDB token (az ad group show -g <group> --query id).
key_vault_secret_officers = []

# First apply: false. After the first code deploy (docs/deploy.md): true.
enable_event_grid_subscriptions = false

tags = {
  owner       = "data-platform"
  cost_center = "analytics"
}
