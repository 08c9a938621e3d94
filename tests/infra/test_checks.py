"""The four infra checks pass on the repository, and each fails, with a message that says what
and where, when a problem is planted in a scratch copy."""
import shutil
import subprocess

from conftest import CHECKS, REPO, SCHEMA_4, TOOLS


def failed(result, *needles):
    code, out = result
    assert code == 1, f"expected the check to fail, it exited {code}:\n{out}"
    for n in needles:
        assert n in out, f"expected {n!r} in the output:\n{out}"
    return out


def errors(result):
    return {line for line in result[1].splitlines() if line.startswith("ERROR")}


def planted(repo, plant):
    """The consistency problems a plant adds, compared with the copy before it: other engineers'
    work in progress in the same tree must not decide these tests."""
    before = errors(repo.consistency())
    plant()
    code, out = repo.consistency()
    new = errors((code, out)) - before
    if new:
        assert code == 1, f"problems reported but exit {code}:\n{out}"
    return sorted(new)


def has(new, *needles):
    text = "\n".join(new)
    for n in needles:
        assert n in text, f"expected {n!r} among the new problems:\n{text or '(none)'}"


def only(new, *needles):
    """Exactly one new problem, and it says all of needles."""
    assert len(new) == 1, "expected exactly one new problem:\n" + "\n".join(new)
    has(new, *needles)


def add_shared_setting(repo, line):
    repo.replace("infra/locals.tf", "    MOVIELAKE_LOG                 = var.log_filter\n",
                 f"    MOVIELAKE_LOG                 = var.log_filter\n    {line}\n")


def passed(result):
    code, out = result
    assert code == 0, f"expected the check to pass, it exited {code}:\n{out}"
    return out


# --- the repository as it is -------------------------------------------------------------------

def test_all_four_checks_pass_on_the_repository(repo):
    passed(repo.syntax())
    passed(repo.schema())
    passed(repo.schema(SCHEMA_4))
    passed(repo.checkov())
    out = passed(repo.consistency())
    assert "ok: Functions (folder and route): " in out and "ingest_watch_events" in out


# --- the three problems the issue names ----------------------------------------------------------

def test_unknown_argument_fails_the_schema_check(repo):
    repo.replace("infra/storage.tf", "  is_hns_enabled                    = true\n",
                 "  is_hns_enabled                    = true\n  hierarchical_namespace            = true\n")
    failed(repo.schema(), "storage.tf:", "azurerm_storage_account.lake: unknown argument 'hierarchical_namespace'",
           "1 problem(s)")


def test_missing_app_setting_fails_the_consistency_check(repo):
    new = planted(repo, lambda: repo.replace(
        "infra/locals.tf", "    MOVIELAKE_DEDUPE_WINDOW_HOURS = tostring(var.dedupe_window_hours)\n", ""))
    only(new, "crates/movielake/src/cli/mod.rs:", "reads MOVIELAKE_DEDUPE_WINDOW_HOURS, but the Function App does not set it")


def test_unused_app_setting_fails_the_consistency_check(repo):
    new = planted(repo, lambda: add_shared_setting(repo, 'MOVIELAKE_COLOUR              = "blue"'))
    only(new, "app setting MOVIELAKE_COLOUR (local.shared_settings) is set but nothing reads it")


# --- syntax and formatting -------------------------------------------------------------------

def test_syntax_error_fails_the_syntax_check(repo):
    repo.replace("infra/main.tf", 'resource "azurerm_resource_group" "main" {', 'resource "azurerm_resource_group" "main" {{')
    failed(repo.syntax(), "main.tf: HCL syntax")


def test_unformatted_file_fails_the_fmt_check(repo):
    repo.replace("infra/main.tf", "  name     = local.names.resource_group", "  name = local.names.resource_group")
    failed(repo.syntax(), "main.tf:", "not formatted as terraform fmt would write it")


def test_unformatted_tfvars_fails_the_fmt_check(repo):
    repo.replace("infra/dev.tfvars", 'environment     = "dev"', 'environment = "dev"')
    failed(repo.syntax(), "dev.tfvars:", "not formatted")


# --- schema ----------------------------------------------------------------------------------

def test_missing_required_argument_fails_the_schema_check(repo):
    repo.replace("infra/keyvault.tf", '  sku_name                      = "standard"\n', "")
    failed(repo.schema(), "azurerm_key_vault.main: missing required argument 'sku_name'")


def test_misspelt_argument_in_a_nested_block_is_named_with_a_suggestion(repo):
    repo.replace("infra/eventgrid.tf", "    max_delivery_attempts = var.event_grid_max_delivery_attempts",
                 "    max_delivery_attempt  = var.event_grid_max_delivery_attempts", count=1)
    failed(repo.schema(), "retry_policy: unknown argument 'max_delivery_attempt' (did you mean 'max_delivery_attempts'?)",
           "retry_policy: missing required argument 'max_delivery_attempts'")


def test_dynamic_blocks_and_their_content_are_checked(repo):
    repo.replace("infra/monitoring.tf", """  enabled_metric {
    category = "AllMetrics"
  }""", """  dynamic "enabled_metric" {
    for_each = ["AllMetrics"]
    content {
      categroy = enabled_metric.value
    }
  }

  dynamic "enabled_metrics" {
    for_each = []
    content {}
  }""")
    failed(repo.schema(), "azurerm_monitor_diagnostic_setting.function_app.enabled_metric: unknown argument 'categroy'",
           "azurerm_monitor_diagnostic_setting.function_app: unknown dynamic block 'enabled_metrics' (did you mean 'enabled_metric'?)")


def test_unknown_resource_type_and_unknown_attribute_reference_fail(repo):
    repo.replace("infra/main.tf", 'resource "azurerm_user_assigned_identity" "app" {',
                 'resource "azurerm_user_assigned_identities" "app" {')
    repo.replace("infra/outputs.tf", "azurerm_eventgrid_topic.bronze_landed.endpoint",
                 "azurerm_eventgrid_topic.bronze_landed.endpoint_url")
    failed(repo.schema(), "unknown resource type 'azurerm_user_assigned_identities'",
           "azurerm_eventgrid_topic has no attribute 'endpoint_url'")


def test_argument_removed_in_5x_fails_against_5x(repo):
    # azurerm 4.x's enable_rbac_authorization became rbac_authorization_enabled in 5.x
    repo.replace("infra/keyvault.tf", "  rbac_authorization_enabled    = true",
                 "  enable_rbac_authorization     = true")
    failed(repo.schema(), "unknown argument 'enable_rbac_authorization'", "missing required argument 'rbac_authorization_enabled'")


# --- checkov ---------------------------------------------------------------------------------

def test_failed_checkov_check_fails(repo):
    repo.replace("infra/storage.tf", "  shared_access_key_enabled         = false\n  default_to_oauth_authentication   = true\n  allow_nested_items_to_be_public   = false\n  cross_tenant_replication_enabled  = false\n  local_user_enabled                = false\n  sftp_enabled",
                 "  shared_access_key_enabled         = true\n  default_to_oauth_authentication   = true\n  allow_nested_items_to_be_public   = false\n  cross_tenant_replication_enabled  = false\n  local_user_enabled                = false\n  sftp_enabled")
    failed(repo.checkov(), "azurerm_storage_account.lake: CKV2_AZURE_40 failed")


def test_skip_without_a_reason_fails(repo):
    repo.replace("infra/keyvault.tf", "# checkov:skip=CKV2_AZURE_32:No VNet in this design, so no private endpoint; see CKV_AZURE_109.",
                 "# checkov:skip=CKV2_AZURE_32")
    failed(repo.checkov(), "keyvault.tf:", "azurerm_key_vault.main: checkov:skip=CKV2_AZURE_32 has no written reason")


def test_skip_that_suppresses_nothing_fails(repo):
    repo.replace("infra/eventhubs.tf", 'resource "azurerm_eventhub" "watch_events" {\n',
                 'resource "azurerm_eventhub" "watch_events" {\n  # checkov:skip=CKV_AZURE_35:No reason this applies to an event hub at all.\n')
    failed(repo.checkov(), "azurerm_eventhub.watch_events: checkov:skip=CKV_AZURE_35 suppresses nothing")


# --- consistency -----------------------------------------------------------------------------

def test_function_folder_without_route_fails(repo):
    new = planted(repo, lambda: repo.write(
        "functions/refresh_gold/function.json",
        '{"bindings": [{"type": "timerTrigger", "name": "timer", "direction": "in", "schedule": "0 0 * * * *"}]}\n'))
    only(new, "functions/refresh_gold/function.json exists but the handler has no route for it")


def test_route_without_folder_fails(repo):
    new = planted(repo, lambda: shutil.rmtree(repo.path("functions/ingest_watch_events")))
    has(new, "the handler serves 'ingest_watch_events'", "functions/ingest_watch_events/function.json does not exist")


def test_code_reading_a_new_setting_fails_until_terraform_sets_it(repo):
    new = planted(repo, lambda: repo.replace(
        "crates/movielake/src/cli/mod.rs", '#[arg(long, env = "MOVIELAKE_CONTRACTS", global = true)]',
        '#[arg(long, env = "MOVIELAKE_CONTRACTS", global = true)]\n    #[arg(long, env = "MOVIELAKE_BATCH_LIMIT")]'))
    only(new, "reads MOVIELAKE_BATCH_LIMIT, but the Function App does not set it")


def test_code_reading_a_planned_setting_is_told_to_move_it(repo):
    assert "  planned_settings = {}\n" in repo.read("infra/locals.tf")

    def plant():
        repo.replace("infra/locals.tf", "  planned_settings = {}\n",
                     '  planned_settings = {\n    MOVIELAKE_FUTURE_SETTING = "later"\n  }\n')
        repo.write("crates/movielake/src/announce.rs",
                   'pub fn later() -> Option<String> { std::env::var("MOVIELAKE_FUTURE_SETTING").ok() }\n')

    new = planted(repo, plant)
    only(new, "announce.rs:1 reads MOVIELAKE_FUTURE_SETTING, which infra/locals.tf only declares "
              "(local.planned_settings): move it")


def test_setting_the_sas_a_connection_string_or_a_flex_unsupported_setting_fails(repo):
    def plant():
        add_shared_setting(repo, 'MOVIELAKE_LAKE_SAS            = "sv=2024&sig=abc"')
        add_shared_setting(repo, 'EventHubConnection            = "Endpoint=sb://x/;SharedAccessKey=abc"')
        add_shared_setting(repo, 'FUNCTIONS_WORKER_RUNTIME      = "custom"')
    new = planted(repo, plant)
    has(new, "app setting MOVIELAKE_LAKE_SAS (local.shared_settings) must not be set",
        "app setting EventHubConnection (local.shared_settings) is a connection string",
        "app setting FUNCTIONS_WORKER_RUNTIME (local.shared_settings) is not supported on Flex Consumption")


def test_missing_or_extra_lake_container_fails(repo):
    new = planted(repo, lambda: repo.replace(
        "infra/locals.tf", '["bronze", "silver", "quarantine", "gold", "ops"]', '["bronze", "silver", "quarantine", "ops", "tmp"]'))
    has(new, "the code writes lake container 'gold'", "Terraform creates lake container 'tmp'")
    assert len(new) == 2


def test_event_hub_name_that_terraform_does_not_create_fails(repo):
    new = planted(repo, lambda: repo.replace(
        "functions/ingest_watch_events/function.json", '"%WATCH_EVENTS_HUB%"', '"clicks"'))
    has(new, "functions/ingest_watch_events/function.json: eventHubName is 'clicks', but no azurerm_eventhub here is named that",
        "app setting WATCH_EVENTS_HUB (local.function_settings.ingest_watch_events) is set but nothing reads it")


def test_consumer_group_setting_pointing_elsewhere_fails(repo):
    new = planted(repo, lambda: repo.replace(
        "infra/locals.tf", "WATCH_EVENTS_CONSUMER_GROUP                 = azurerm_eventhub_consumer_group.ingest.name",
        'WATCH_EVENTS_CONSUMER_GROUP                 = "$Default"'))
    only(new, "consumerGroup is %WATCH_EVENTS_CONSUMER_GROUP%, but the app setting WATCH_EVENTS_CONSUMER_GROUP "
              "is not the name of a azurerm_eventhub_consumer_group")


def test_consumer_group_of_another_hub_fails(repo):
    def plant():
        repo.replace("infra/eventhubs.tf", '  eventhub_name       = azurerm_eventhub.watch_events.name',
                     '  eventhub_name       = azurerm_eventhub.other.name')
        repo.write("infra/other.tf", 'resource "azurerm_eventhub" "other" {\n  name              = "other"\n'
                   '  namespace_id      = azurerm_eventhub_namespace.main.id\n  partition_count   = 1\n'
                   '  message_retention = 7\n}\n')
    new = planted(repo, plant)
    only(new, "consumer group azurerm_eventhub_consumer_group.ingest belongs to another hub than azurerm_eventhub.watch_events")


GATED_COUNT = ('count                = var.enable_event_grid_subscriptions && contains(local.functions, "bronze_to_silver") ? 1 : 0\n'
               '  name                 = "bronze-landed-to-silver"')


def retarget_bronze_landed(repo, function, gated):
    gate = f' && contains(local.functions, "{function}")' if gated else ""
    repo.replace("infra/eventgrid.tf", GATED_COUNT,
                 f'count                = var.enable_event_grid_subscriptions{gate} ? 1 : 0\n  name                 = "bronze-landed-to-silver"')
    text = repo.read("infra/eventgrid.tf")
    at = text.index('resource "azurerm_eventgrid_event_subscription" "bronze_landed"')
    repo.write("infra/eventgrid.tf", text[:at] + text[at:].replace("/functions/bronze_to_silver", f"/functions/{function}", 1))


def test_event_grid_subscription_to_a_function_still_to_come_is_gated_on_it(repo):
    new = planted(repo, lambda: retarget_bronze_landed(repo, "refresh_gold", gated=True))
    assert new == []
    assert "gated until functions/refresh_gold/ exists: azurerm_eventgrid_event_subscription.bronze_landed" in repo.consistency()[1]


def test_event_grid_subscription_to_a_missing_function_fails_when_not_gated(repo):
    new = planted(repo, lambda: retarget_bronze_landed(repo, "refresh_gold", gated=False))
    only(new, "azurerm_eventgrid_event_subscription.bronze_landed delivers to Function 'refresh_gold', which does not exist",
         "its count is not gated on it")


def test_event_grid_subscription_to_a_misspelt_function_fails(repo):
    new = planted(repo, lambda: repo.replace(
        "infra/eventgrid.tf", '.id}/functions/bronze_to_silver"', '.id}/functions/bronze_2_silver"', count=1))
    only(new, "delivers to Function 'bronze_2_silver', which does not exist")


# A Function declared in Terraform ahead of its code, as pull_tmdb_lists and bronze_to_silver were.
PLANNED = """    refresh_gold = {
      GOLD_SCHEDULE = "0 0 * * * *"
    }
"""


def plan_refresh_gold(repo):
    repo.replace("infra/locals.tf", "  function_settings = {\n", "  function_settings = {\n" + PLANNED)


def land_refresh_gold(repo, schedule_setting="GOLD_SCHEDULE", reads=(), trigger="timerTrigger"):
    """What the issue that writes the Function does: function.json, handler module, route."""
    binding = {"timerTrigger": f'"type": "timerTrigger", "name": "timer", "direction": "in", "schedule": "%{schedule_setting}%"',
               "eventGridTrigger": '"type": "eventGridTrigger", "name": "event", "direction": "in"'}[trigger]
    repo.write("functions/refresh_gold/function.json", '{"bindings": [{' + binding + '}]}\n')
    repo.write("crates/movielake/src/handler/refresh_gold.rs", 'pub const NAME: &str = "refresh_gold";\n' + "".join(
        f'pub fn setting_{i}() -> Option<String> {{ std::env::var("{s}").ok() }}\n' for i, s in enumerate(reads)))
    repo.replace("crates/movielake/src/handler/mod.rs", "pub const FUNCTIONS: &[&str] = &[",
                 "pub const FUNCTIONS: &[&str] = &[refresh_gold::NAME, ")


def test_settings_of_a_function_still_to_come_are_gated(repo):
    new = planted(repo, lambda: plan_refresh_gold(repo))
    assert new == []
    assert "gated until functions/refresh_gold/ exists: GOLD_SCHEDULE" in repo.consistency()[1]


def test_a_planned_function_passes_once_its_code_lands(repo):
    plan_refresh_gold(repo)
    new = planted(repo, lambda: land_refresh_gold(repo))
    assert new == []
    assert "gated until functions/refresh_gold/" not in repo.consistency()[1]


def test_a_landed_function_reading_other_names_than_terraform_sets_fails(repo):
    plan_refresh_gold(repo)
    new = planted(repo, lambda: land_refresh_gold(repo, schedule_setting="GOLD_CRON", reads=["GOLD_WINDOW_DAYS"]))
    has(new, "%GOLD_CRON% in functions/refresh_gold/function.json, but the Function App does not set GOLD_CRON",
        "refresh_gold.rs:2 reads GOLD_WINDOW_DAYS, but the Function App does not set it",
        "app setting GOLD_SCHEDULE (local.function_settings.refresh_gold) is set but nothing reads it")
    assert len(new) == 3


def test_event_grid_target_without_an_event_grid_trigger_fails(repo):
    plan_refresh_gold(repo)
    retarget_bronze_landed(repo, "refresh_gold", gated=True)
    new = planted(repo, lambda: land_refresh_gold(repo))
    only(new, "delivers to 'refresh_gold', but functions/refresh_gold/function.json has no eventGridTrigger binding")


# --- the entry point ---------------------------------------------------------------------------

def test_check_infra_script_exits_non_zero_and_names_the_failed_check(repo):
    shutil.copytree(REPO / "infra" / "checks", repo.infra / "checks", ignore=shutil.ignore_patterns("__pycache__"))
    (repo.root / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "check_infra.sh", repo.root / "scripts" / "check_infra.sh")
    (repo.root / ".tools").mkdir()
    (repo.root / ".tools" / "infra").symlink_to(TOOLS)
    add_shared_setting(repo, 'MOVIELAKE_COLOUR              = "blue"')
    p = subprocess.run(["bash", "scripts/check_infra.sh", "consistency", "syntax"], cwd=repo.root,
                       capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "FAIL code <-> infrastructure consistency" in out
    assert "PASS syntax and fmt" in out
    assert "infra checks: FAILED" in out
    assert CHECKS.exists()
