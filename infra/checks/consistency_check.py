#!/usr/bin/env python3
"""Check 4 of scripts/check_infra.sh: the code and the infrastructure agree.

  1. Functions: every folder functions/<name>/function.json is a route of the handler (the Rust
     const FUNCTIONS in crates/movielake/src/handler/mod.rs, each module's `pub const NAME`), and
     every route has a folder.
  2. App settings: every setting the code reads is set on the Function App, and every setting
     set is read: by the movielake binary (clap `env = "..."`, `std::env::var("...")`,
     `try_from_env("...")`, a settings lookup `var("UPPER_CASE")` in crates/*/src), by the Functions host for a binding (`%NAME%` in a
     function.json, `<connection>__*` of an identity-based connection), or by the platform (the
     allow-list PLATFORM_SETTINGS below, each with its reason). Settings the code reads that are
     deliberately not set are in NOT_SET (each with its reason). No keys or connection strings.
  3. Lake containers: every container the code writes (CONTAINERS in
     crates/movielake/src/config.rs) exists in the lake account, and the lake has no other.
  4. Event Grid: every subscription delivers to a Function that exists (folder and route) and has
     an eventGridTrigger, or is created only once it exists (`contains(local.functions, "<name>")`
     in its count).
  5. Event Hubs: the hub and consumer group each Event Hub trigger names (literally or through
     %SETTING%) are the ones Terraform creates, in the namespace its connection points at.
  6. Event Grid schemas: the schema the code publishes (the content type and envelope in
     crates/movielake/src/clients/eventgrid.rs) is the input_schema of the topic whose endpoint the app
     is given; each subscription on that topic delivers a schema Event Grid can convert it to;
     every subscription delivers a schema the handler's decoder reads (`enum Schema` in
     crates/movielake-core/src/host/eventgrid.rs).
  7. Resource providers: every azurerm resource type used in infra/*.tf maps to its resource
     provider namespace (RESOURCE_PROVIDERS below) and that namespace is in the provider block's
     resource_providers_to_register (azurerm 5.x registers none by default); a namespace
     registered for no resource needs its reason in EXTRA_NAMESPACES.
  8. Variable values: every value in infra/*.tfvars (and every default) satisfies the
     `validation` conditions of its variable, evaluated offline (infra/checks/tfexpr.py); a
     tfvars name that is no variable is an error.

Terraform side: the app settings are evaluated from the structure of infra/locals.tf
(`platform_settings`, `shared_settings`, `function_settings` per Function, merged into
`app_settings` with only the Functions whose folder exists; `planned_settings` are declared for
code still to come and not set); anything else it cannot evaluate is reported as a problem
rather than guessed.

usage: consistency_check.py [--repo ROOT] [--infra DIR]      exit 1 when a problem is found
"""
import argparse
import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import hcl2  # noqa: E402
import tfexpr  # noqa: E402
from tfload import Module, literal, unquote  # noqa: E402

# Set on the Function App for the Functions host or the platform, not read by our code.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage": "must be empty: replaces the key-less connection string azurerm writes "
                           "for Flex Consumption apps (terraform-provider-azurerm#29693), so the host "
                           "uses the AzureWebJobsStorage__* identity settings",
    "AzureWebJobsStorage__accountName": "host storage (keys, leases, Event Hub checkpoints) through a managed identity",
    "AzureWebJobsStorage__credential": "host storage through a managed identity",
    "AzureWebJobsStorage__clientId": "host storage through the user-assigned identity",
    "AzureWebJobsStorage__blobServiceUri": "host storage through a managed identity (explicit endpoint)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends logs and invocations (site_config)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry with Azure AD auth (local auth is off on Application Insights)",
}
# Read by the code, deliberately not set in Azure.
NOT_SET = {
    "MOVIELAKE_LAKE_SAS": "a SAS is a key: in Azure the lake is reached with the managed identity (must never be set)",
    "MOVIELAKE_CONTRACTS": "the binary reads ./contracts, shipped in the package at the app root (its working "
                           "directory), else the contracts built into it",
    "FUNCTIONS_CUSTOMHANDLER_PORT": "set by the Functions host when it starts the custom handler",
    "IDENTITY_ENDPOINT": "set by the platform where a managed identity is available",
    "IDENTITY_HEADER": "set by the platform where a managed identity is available",
    "TMDB_BASE_URL": "defaults to TMDB's public API; only tests point it at a stand-in server",
    "MOVIELAKE_SQL_SOURCE": "pull_subscriptions: the SQL source's name in the lake's paths; the default (platform) fits",
    "MOVIELAKE_SQL_LAG_SECONDS": "pull_subscriptions: defaults to pull-sql's 5 s; set on the app to override",
    "MOVIELAKE_SQL_OVERLAP_SECONDS": "pull_subscriptions: defaults to pull-sql's 900 s; set on the app to override",
    "MOVIELAKE_SQL_KEY_CHECK_HOURS": "pull_subscriptions: defaults to pull-sql's 24 h; set on the app to override",
    "MOVIELAKE_DIMENSION_REFRESH_SECONDS": "ingest_watch_events: the default (60 s) keeps enrichment a minute behind "
                                           "the SQL pulls; set on the app to override",
    "MOVIELAKE_REENRICH_DAYS": "maintain_tables: the default (7 days) is the issue's window; set on the app to override",
    "MOVIELAKE_SQL_PAGE_ROWS": "pull_subscriptions: defaults to pull-sql's 20,000 rows a page (BENCHMARKS.md); set on the app to override",
    "MOVIELAKE_SQL_CA_FILE": "extra PEM roots for a private CA; Azure Database for PostgreSQL's certificates chain "
                             "to public roots in the system store",
    "TMDB_LISTS": "defaults to ./tmdb_lists.toml, shipped in the package (scripts/package.sh), else the "
                  "copy built into the binary",
}
MUST_NOT_SET = {"MOVIELAKE_LAKE_SAS"}
# Not supported on Flex Consumption (runtime and content come from functionAppConfig).
FLEX_UNSUPPORTED = {
    "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE",
    "WEBSITE_NODE_DEFAULT_VERSION", "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT", "APPINSIGHTS_INSTRUMENTATIONKEY",
}
# What the host reads after `<connection>__` for an identity-based connection.
CONNECTION_SUFFIXES = {"fullyQualifiedNamespace", "credential", "clientId", "accountName",
                       "serviceUri", "blobServiceUri", "queueServiceUri", "tableServiceUri", "topicEndpointUri"}
# Event Grid: the azurerm value of each schema, how the code's envelope and content type are
# recognised, and what a topic of each input schema can deliver ("An Event Grid output schema can't
# be used when using CloudEvents as an input schema":
# https://learn.microsoft.com/azure/event-grid/cloud-event-schema).
CLOUDEVENTS, EVENTGRID = "CloudEventSchemaV1_0", "EventGridSchema"
DELIVERABLE = {CLOUDEVENTS: {CLOUDEVENTS}, EVENTGRID: {EVENTGRID, CLOUDEVENTS}}
DECODER_SCHEMAS = {"EventGrid": EVENTGRID, "CloudEvents": CLOUDEVENTS}   # enum Schema variants
# The default when the argument is absent (azurerm: input_schema and event_delivery_schema both
# default to EventGridSchema).
DEFAULT_SCHEMA = EVENTGRID

# The resource provider namespace of each azurerm type used here ({namespace}/{type} in Azure
# Resource Manager). A type missing from this table fails the check: add it with its namespace.
RESOURCE_PROVIDERS = {
    "azurerm_resource_group": "Microsoft.Resources",
    "azurerm_role_assignment": "Microsoft.Authorization",
    "azurerm_user_assigned_identity": "Microsoft.ManagedIdentity",
    "azurerm_storage_account": "Microsoft.Storage",
    "azurerm_storage_container": "Microsoft.Storage",
    "azurerm_storage_management_policy": "Microsoft.Storage",
    "azurerm_eventhub_namespace": "Microsoft.EventHub",
    "azurerm_eventhub": "Microsoft.EventHub",
    "azurerm_eventhub_consumer_group": "Microsoft.EventHub",
    "azurerm_eventgrid_topic": "Microsoft.EventGrid",
    "azurerm_eventgrid_system_topic": "Microsoft.EventGrid",
    "azurerm_eventgrid_event_subscription": "Microsoft.EventGrid",
    "azurerm_eventgrid_system_topic_event_subscription": "Microsoft.EventGrid",
    "azurerm_key_vault": "Microsoft.KeyVault",
    "azurerm_key_vault_secret": "Microsoft.KeyVault",
    "azurerm_log_analytics_workspace": "Microsoft.OperationalInsights",
    "azurerm_application_insights": "Microsoft.Insights",
    "azurerm_monitor_diagnostic_setting": "Microsoft.Insights",
    "azurerm_service_plan": "Microsoft.Web",
    # Flex Consumption apps are Microsoft.Web/sites, and also need Microsoft.App
    # (hashicorp/terraform-provider-azurerm#30397).
    "azurerm_function_app_flex_consumption": ("Microsoft.Web", "Microsoft.App"),
}
# Data sources that call no resource provider of their own.
NO_PROVIDER_DATA = {"azurerm_client_config"}
# Registered although no resource type above needs it, each with the reason.
EXTRA_NAMESPACES = {
    "Microsoft.AlertsManagement": "Application Insights creates its \"Failure Anomalies\" smart detector "
                                  "rule there (hashicorp/terraform-provider-azurerm#26209)",
}

SECRET = re.compile(r"AccountKey=|SharedAccessKey=|SharedAccessSignature|[?&]sig=|Password=", re.I)

READ_PATTERNS = [
    re.compile(r'(?<!let )\benv\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"'),         # clap #[arg(env = "X")]
    re.compile(r'env::var(?:_os)?\(\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\)'),   # std::env::var("X")
    re.compile(r'\b(?:try_)?from_env\(\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\)'),  # EnvFilter::try_from_env("X")
    re.compile(r'(?<![\w:.])var\(\s*"([A-Z][A-Z0-9_]*)"\s*\)'),             # a settings lookup: var("X")
]
PLACEHOLDER = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
REF = re.compile(r"\b(azurerm_[a-z0-9_]+)\.([A-Za-z_][\w-]*)\.([a-z_]+)")


class Report:
    def __init__(self):
        self.errors, self.notes = [], []

    def error(self, msg):
        self.errors.append(msg)

    def note(self, msg):
        self.notes.append(msg)


# ------------------------------------------------------------------------------------------------
# The code side
# ------------------------------------------------------------------------------------------------

def rust_sources(repo):
    return sorted(pathlib.Path(repo, "crates").glob("*/src/**/*.rs"))


def handler_functions(repo, r):
    """Names in the Rust const FUNCTIONS: string literals, or `module::NAME` resolved to the
    module's `pub const NAME: &str = "...";`."""
    handler = pathlib.Path(repo, "crates/movielake/src/handler")
    mod = handler / "mod.rs"
    if not mod.exists():
        r.error(f"{mod}: missing: cannot find the handler's Functions (const FUNCTIONS)")
        return set()
    m = re.search(r"\bconst\s+FUNCTIONS\s*:[^=]*=\s*&\s*\[(.*?)\]\s*;", mod.read_text(), re.S)
    if not m:
        r.error(f"{mod}: no `const FUNCTIONS: &[&str] = &[...]`: cannot tell which Functions the handler serves")
        return set()
    names = set()
    for item in [i.strip() for i in m.group(1).split(",") if i.strip()]:
        if item.startswith('"'):
            names.add(item.strip('"'))
            continue
        path = re.fullmatch(r"([a-z_][a-z0-9_]*)::NAME", item)
        if not path:
            r.error(f"{mod}: FUNCTIONS entry `{item}` is neither a string nor `<module>::NAME`")
            continue
        module = path.group(1)
        for candidate in (handler / f"{module}.rs", handler / module / "mod.rs"):
            if candidate.exists():
                c = re.search(r'\bpub\s+const\s+NAME\s*:\s*&(?:\'static\s+)?str\s*=\s*"([^"]+)"', candidate.read_text())
                if c:
                    names.add(c.group(1))
                else:
                    r.error(f"{candidate}: no `pub const NAME: &str = \"...\"` (listed in FUNCTIONS)")
                break
        else:
            r.error(f"{mod}: FUNCTIONS names module `{module}`, but handler/{module}.rs does not exist")
    return names


def function_folders(repo, r):
    """{name: parsed function.json} of every functions/<name>/function.json."""
    out = {}
    for f in sorted(pathlib.Path(repo, "functions").glob("*/function.json")):
        try:
            out[f.parent.name] = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            r.error(f"{f}: not valid JSON: {e}")
    for d in sorted(pathlib.Path(repo, "functions").glob("*/")):
        if d.is_dir() and not (d / "function.json").exists():
            r.error(f"{d}: a Function folder without function.json")
    return out


def settings_read_by_code(repo):
    """{setting: 'file:line'} of every environment variable the Rust sources read."""
    out = {}
    for f in rust_sources(repo):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("//")[0] if not line.lstrip().startswith("#[") else line
            for pattern in READ_PATTERNS:
                for m in pattern.finditer(code):
                    out.setdefault(m.group(1), f"{f.relative_to(repo)}:{n}")
    return out


def lake_containers_in_code(repo, r):
    f = pathlib.Path(repo, "crates/movielake/src/config.rs")
    m = re.search(r"\bconst\s+CONTAINERS\s*:[^=]*=\s*&\s*\[(.*?)\]\s*;", f.read_text(), re.S) if f.exists() else None
    if not m:
        r.error(f"{f}: no `const CONTAINERS: &[&str] = &[...]`: cannot tell which lake containers the code writes")
        return set()
    return set(re.findall(r'"([^"]+)"', m.group(1)))


def bindings(functions):
    """(function, binding) pairs."""
    for name, doc in functions.items():
        for b in doc.get("bindings", []) if isinstance(doc, dict) else []:
            if isinstance(b, dict):
                yield name, b


def placeholders(value):
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


# ------------------------------------------------------------------------------------------------
# The Terraform side
# ------------------------------------------------------------------------------------------------

class Infra:
    def __init__(self, folder, r):
        self.m = Module(folder)
        self.r = r
        self.locals = self.m.locals()
        self.vars = self.m.variables()

    def one(self, rtype):
        found = self.m.resources(rtype)
        if len(found) != 1:
            self.r.error(f"infra: expected exactly one {rtype}, found {len(found)}")
            return None
        return found[0]

    def local_value(self, expr):
        """The raw value of `${local.x}`, followed through chains of locals; else expr itself."""
        seen = set()
        while isinstance(expr, str):
            m = re.fullmatch(r"\$\{local\.([A-Za-z_][\w-]*)\}", expr)
            if not m or m.group(1) in seen or m.group(1) not in self.locals:
                break
            seen.add(m.group(1))
            expr = self.locals[m.group(1)][1]
        return expr

    def string_value(self, expr):
        """A literal string, a variable's default, or None when it is computed."""
        expr = self.local_value(expr)
        if literal(expr) is not None:
            return literal(expr)
        m = re.fullmatch(r"\$\{var\.([A-Za-z_][\w-]*)\}", expr or "") if isinstance(expr, str) else None
        if m and m.group(1) in self.vars:
            return literal(self.vars[m.group(1)][1].get("default"))
        return None

    def string_set(self, expr):
        """Strings of a literal list/set expression (`["a", "b"]`, `toset([...])`, a local)."""
        expr = self.local_value(expr)
        if isinstance(expr, list):
            return {literal(x) for x in expr if literal(x) is not None}
        if isinstance(expr, str):
            m = re.fullmatch(r"\$\{(?:toset\()?\[(.*)\]\)?\}", expr, re.S)
            if m:
                return set(re.findall(r'"([^"$]*)"', m.group(1)))
        return None

    def functions_local_is_fileset(self):
        v = self.locals.get("functions", (None, ""))[1]
        return isinstance(v, str) and "fileset(" in v and "../functions" in v and "function.json" in v


def settings_map(infra, name, r):
    """{key: raw value} of a local holding a literal map."""
    if name not in infra.locals:
        r.error(f"infra: local.{name} is not defined (app settings are built from it)")
        return {}
    value = infra.locals[name][1]
    if not isinstance(value, dict):
        r.error(f"infra: local.{name} must be a literal map of app settings, so that it can be checked")
        return {}
    return {unquote(k): v for k, v in value.items() if not k.startswith("__")}


def app_settings(infra, app_body, r):
    """(always: {setting: raw value}, per_function: {function: {setting: raw}}, platform keys)."""
    raw = app_body.get("app_settings")
    value = infra.local_value(raw)
    if isinstance(value, dict):  # a literal map right on the resource
        return {unquote(k): v for k, v in value.items() if not k.startswith("__")}, {}, set()
    if not isinstance(value, str) or not value.startswith("${merge("):
        r.error("infra: the Function App's app_settings must be local.app_settings built as "
                "merge(local.platform_settings, local.shared_settings, [for name, settings in "
                "local.function_settings : settings if contains(local.functions, name)]...); "
                f"found {raw!r}, which this check cannot evaluate")
        return {}, {}, set()
    refs = set(re.findall(r"\b(local|var)\.([A-Za-z_][\w-]*)", value))
    allowed = {("local", "platform_settings"), ("local", "shared_settings"),
               ("local", "function_settings"), ("local", "functions")}
    if refs - allowed or not re.search(r"if\s+contains\(\s*local\.functions\s*,\s*name\s*\)", value):
        r.error("infra: local.app_settings must be exactly merge(local.platform_settings, "
                "local.shared_settings, [for name, settings in local.function_settings : settings "
                "if contains(local.functions, name)]...) for this check to evaluate it; it references "
                + ", ".join(sorted(f"{a}.{b}" for a, b in refs - allowed) or ["a different filter"]))
    platform = settings_map(infra, "platform_settings", r)
    shared = settings_map(infra, "shared_settings", r)
    per_function = {}
    if "function_settings" in infra.locals:
        fs = infra.locals["function_settings"][1]
        if not isinstance(fs, dict):
            r.error("infra: local.function_settings must be a literal map { <function> = { <setting> = ... } }")
        else:
            for fname, settings in fs.items():
                if fname.startswith("__"):
                    continue
                if not isinstance(settings, dict):
                    r.error(f"infra: local.function_settings.{unquote(fname)} must be a literal map of settings")
                    continue
                per_function[unquote(fname)] = {unquote(k): v for k, v in settings.items() if not k.startswith("__")}
    if not infra.functions_local_is_fileset():
        r.error('infra: local.functions must be the folders of functions/ (toset([for f in fileset('
                '"${path.module}/../functions", "*/function.json") : dirname(f)])): the per-Function '
                "settings and Event Grid subscriptions are gated on it")
    always = dict(platform)
    for k, v in shared.items():
        always[k] = v
    return always, per_function, set(platform)


# ------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------

def check(repo, infra_dir):
    r = Report()
    repo = pathlib.Path(repo).resolve()
    infra = Infra(infra_dir, r)

    # 1. Functions <-> routes ------------------------------------------------------------------
    functions = function_folders(repo, r)
    routes = handler_functions(repo, r)
    for name in sorted(set(functions) - routes):
        r.error(f"functions/{name}/function.json exists but the handler has no route for it: add its "
                f"module to FUNCTIONS in crates/movielake/src/handler/mod.rs (or remove the folder)")
    for name in sorted(routes - set(functions)):
        r.error(f"the handler serves '{name}' (FUNCTIONS in crates/movielake/src/handler/mod.rs) but "
                f"functions/{name}/function.json does not exist: the host will never call it")
    existing = set(functions) & routes
    r.note(f"Functions (folder and route): {', '.join(sorted(existing)) or 'none'}")

    # 2. App settings ---------------------------------------------------------------------------
    found = infra.one("azurerm_function_app_flex_consumption")
    if found is None:
        return r
    app_file, _, app_name, app_body = found
    always, per_function, platform_keys = app_settings(infra, app_body, r)
    set_settings = dict(always)          # setting -> raw value
    origin = {k: ("local.platform_settings" if k in platform_keys else "local.shared_settings") for k in always}
    for fname, settings in per_function.items():
        if fname in functions:
            for k, v in settings.items():
                set_settings[k] = v
                origin[k] = f"local.function_settings.{fname}"
    gated = {f: s for f, s in per_function.items() if f not in functions}
    planned = settings_map(infra, "planned_settings", r) if "planned_settings" in infra.locals else {}
    site = (app_body.get("site_config") or [{}])[0]
    if site.get("application_insights_connection_string") is not None:
        set_settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] = site["application_insights_connection_string"]
        origin["APPLICATIONINSIGHTS_CONNECTION_STRING"] = "site_config.application_insights_connection_string"
    if literal(app_body.get("storage_authentication_type")) == "StorageAccountConnectionString":
        r.error(f"{app_file.name}: storage_authentication_type = StorageAccountConnectionString puts a storage "
                "key in DEPLOYMENT_STORAGE_CONNECTION_STRING: use UserAssignedIdentity")

    read_by_code = settings_read_by_code(repo)
    # what the host reads for the bindings
    read_by_host = {}          # setting -> reason
    connections = {}           # connection prefix -> [(function, binding type)]
    for fname, b in bindings(functions):
        for p in placeholders(b):
            read_by_host.setdefault(p, f"%{p}% in functions/{fname}/function.json")
        if isinstance(b.get("connection"), str):
            connections.setdefault(b["connection"], []).append((fname, b.get("type", "?")))

    for key, value in sorted(set_settings.items()):
        where = origin.get(key, "app_settings")
        if key in MUST_NOT_SET:
            r.error(f"app setting {key} ({where}) must not be set: {NOT_SET[key]}")
            continue
        if key in FLEX_UNSUPPORTED:
            r.error(f"app setting {key} ({where}) is not supported on Flex Consumption: remove it "
                    "(runtime, version and package come from the Function App's own arguments)")
            continue
        if isinstance(value, str) and SECRET.search(value):
            r.error(f"app setting {key} ({where}) holds a key or signature: use a managed identity "
                    "or a Key Vault reference")
        if key in connections:
            r.error(f"app setting {key} ({where}) is a connection string for binding connection '{key}' "
                    f"(functions/{connections[key][0][0]}): use identity-based settings {key}__fullyQualifiedNamespace etc.")
            continue
        prefix, sep, suffix = key.partition("__")
        if sep and prefix in connections:
            if suffix not in CONNECTION_SUFFIXES:
                r.error(f"app setting {key} ({where}): the host reads no '{suffix}' for an identity-based "
                        f"connection (known: {', '.join(sorted(CONNECTION_SUFFIXES))})")
            continue
        if key in platform_keys or key == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            if key not in PLATFORM_SETTINGS:
                r.error(f"app setting {key} ({where}) is set for the platform but is not on the allow-list "
                        "PLATFORM_SETTINGS of infra/checks/consistency_check.py: nothing reads it, remove it "
                        "(or add it to the allow-list with the reason the host or platform needs it)")
            elif key == "AzureWebJobsStorage" and literal(value) != "":
                r.error("app setting AzureWebJobsStorage must be \"\": a connection string would carry a key "
                        "(host storage goes through AzureWebJobsStorage__* and the managed identity)")
            continue
        if key in read_by_code or key in read_by_host:
            continue
        if key in PLATFORM_SETTINGS:
            r.error(f"app setting {key} ({where}) is a platform setting: move it to local.platform_settings")
            continue
        r.error(f"app setting {key} ({where}) is set but nothing reads it: no `env = \"{key}\"` or "
                f"env::var(\"{key}\") in crates/*/src and no %{key}% in functions/*/function.json; "
                "remove it, or read it in the code")

    for key, at in sorted(read_by_code.items()):
        if key in set_settings or key in NOT_SET:
            continue
        later = [f for f, s in gated.items() if key in s]
        if key in planned:
            r.error(f"{at} reads {key}, which infra/locals.tf only declares (local.planned_settings): move it "
                    "into local.shared_settings, or local.function_settings.<function> if one Function reads it")
        elif later:
            r.error(f"{at} reads {key}, but Terraform sets it only once functions/{later[0]}/ exists "
                    f"(local.function_settings.{later[0]}): move it to local.shared_settings or add the Function")
        else:
            r.error(f"{at} reads {key}, but the Function App does not set it: add it to local.shared_settings "
                    "in infra/locals.tf (or, if it must stay unset in Azure, to NOT_SET in "
                    "infra/checks/consistency_check.py with the reason)")
    for key, why in sorted(read_by_host.items()):
        if key not in set_settings:
            later = [f for f, s in gated.items() if key in s]
            r.error(f"{why}, but the Function App does not set {key}"
                    + (f" (local.function_settings.{later[0]} has it, under another Function name)" if later else
                       " (it is only declared in local.planned_settings: move it)" if key in planned else
                       ": add it to local.function_settings in infra/locals.tf"))
    for key in sorted(planned):
        if key in set_settings:
            r.error(f"{key} is both in local.planned_settings and set on the app: keep one")
        elif key not in read_by_code and key not in read_by_host:
            r.note(f"planned, not set (no code reads it yet): {key}")
    for conn, users in sorted(connections.items()):
        fname, btype = users[0]
        have = {k for k in set_settings if k == conn or k.startswith(conn + "__")}
        if not have:
            r.error(f"functions/{fname}/function.json: binding connection '{conn}' has no app setting: set "
                    f"{conn}__fullyQualifiedNamespace (identity-based)" if "eventHub" in btype or "serviceBus" in btype
                    else f"functions/{fname}/function.json: binding connection '{conn}' has no {conn}__* app setting")
        elif ("eventHub" in btype or "serviceBus" in btype) and f"{conn}__fullyQualifiedNamespace" not in have:
            r.error(f"functions/{fname}/function.json: binding connection '{conn}' needs "
                    f"{conn}__fullyQualifiedNamespace (identity-based connection)")
    for fname, settings in sorted(gated.items()):
        r.note(f"gated until functions/{fname}/ exists: " + (", ".join(sorted(settings)) or "no settings"))
    r.note(f"app settings set: {len(set_settings)}; read by the code: {len(read_by_code)}; "
           f"by the host for bindings: {len(read_by_host) + sum(1 for k in set_settings if k.partition('__')[0] in connections)}")

    # 3. Lake containers --------------------------------------------------------------------------
    code_containers = lake_containers_in_code(repo, r)
    lake_expr = set_settings.get("MOVIELAKE_LAKE")
    lake_ref = re.search(r"azurerm_storage_account\.([\w-]+)\.primary_blob_endpoint", lake_expr or "")
    if not lake_ref:
        r.error("infra: MOVIELAKE_LAKE must be built from azurerm_storage_account.<lake>.primary_blob_endpoint "
                "(so that the lake account is known)")
    else:
        lake = lake_ref.group(1)
        accounts = {n: b for _, _, n, b in infra.m.resources("azurerm_storage_account")}
        if lake in accounts and str(accounts[lake].get("is_hns_enabled")).lower() != "true":
            r.error(f"infra: the lake azurerm_storage_account.{lake} must have is_hns_enabled = true (ADLS Gen2)")
        tf_containers, unknown = set(), []
        for f, _, cname, body in infra.m.resources("azurerm_storage_container"):
            if f"azurerm_storage_account.{lake}." not in str(body.get("storage_account_id", "")):
                continue
            name = body.get("name")
            if literal(name) is not None:
                tf_containers.add(literal(name))
            elif name == "${each.key}" or name == "${each.value}":
                values = infra.string_set(body.get("for_each"))
                if values is None:
                    unknown.append(cname)
                else:
                    tf_containers |= values
            else:
                unknown.append(cname)
        for cname in unknown:
            r.error(f"infra: cannot evaluate the name of azurerm_storage_container.{cname} (use a literal, "
                    "or for_each over a literal set)")
        for c in sorted(code_containers - tf_containers):
            r.error(f"the code writes lake container '{c}' (CONTAINERS in crates/movielake/src/config.rs) but "
                    f"Terraform does not create it in azurerm_storage_account.{lake}")
        for c in sorted(tf_containers - code_containers):
            r.error(f"Terraform creates lake container '{c}' but the code never writes it (CONTAINERS in "
                    "crates/movielake/src/config.rs): remove it")
        r.note(f"lake containers: {', '.join(sorted(tf_containers & code_containers))}")

    # 4. Event Grid subscriptions ---------------------------------------------------------------
    app_ref = f"azurerm_function_app_flex_consumption.{app_name}.id"
    for rtype in ("azurerm_eventgrid_event_subscription", "azurerm_eventgrid_system_topic_event_subscription"):
        for f, _, sname, body in infra.m.resources(rtype):
            addr = f"{rtype}.{sname}"
            endpoint = (body.get("azure_function_endpoint") or [{}])[0].get("function_id", "")
            m = re.search(r"/functions/([A-Za-z0-9_-]+)\"?$", str(endpoint))
            if not m or app_ref not in str(endpoint):
                r.error(f"{infra.m.where(f, rtype, sname)}: {addr}: azure_function_endpoint.function_id must be "
                        f"\"${{{app_ref}}}/functions/<name>\"")
                continue
            target = m.group(1)
            gate = f'contains(local.functions, "{target}")'
            gated_on_it = gate in str(body.get("count", ""))
            if target in existing:
                types = {b.get("type") for fn, b in bindings(functions) if fn == target}
                if "eventGridTrigger" not in types:
                    r.error(f"{addr} delivers to '{target}', but functions/{target}/function.json has no "
                            f"eventGridTrigger binding (it has: {', '.join(sorted(map(str, types))) or 'none'})")
                else:
                    r.note(f"{addr} -> {target}")
            elif gated_on_it:
                r.note(f"gated until functions/{target}/ exists: {addr}")
            else:
                r.error(f"{infra.m.where(f, rtype, sname)}: {addr} delivers to Function '{target}', which does "
                        f"not exist (no functions/{target}/ folder or no handler route), and its count is not "
                        f"gated on it: add `{gate}` to its count or fix the name")

    # 5. Event Hubs ------------------------------------------------------------------------------
    hubs = {n: b for _, _, n, b in infra.m.resources("azurerm_eventhub")}
    groups = {n: b for _, _, n, b in infra.m.resources("azurerm_eventhub_consumer_group")}
    for fname, b in bindings(functions):
        if b.get("type") != "eventHubTrigger":
            continue
        where = f"functions/{fname}/function.json"
        hub = resolve_binding_ref(b.get("eventHubName"), "azurerm_eventhub", set_settings, hubs, infra,
                                  f"{where}: eventHubName", r)
        group = resolve_binding_ref(b.get("consumerGroup", "$Default"), "azurerm_eventhub_consumer_group",
                                    set_settings, groups, infra, f"{where}: consumerGroup", r)
        if hub and group and f"azurerm_eventhub.{hub}.name" not in str(groups[group].get("eventhub_name")):
            r.error(f"{where}: consumer group azurerm_eventhub_consumer_group.{group} belongs to another hub "
                    f"than azurerm_eventhub.{hub}")
        conn = b.get("connection")
        fqns = str(set_settings.get(f"{conn}__fullyQualifiedNamespace", ""))
        ns = re.search(r"azurerm_eventhub_namespace\.([\w-]+)\.name", fqns)
        if hub and ns and f"azurerm_eventhub_namespace.{ns.group(1)}.id" not in str(hubs[hub].get("namespace_id")):
            r.error(f"{where}: {conn}__fullyQualifiedNamespace points at namespace {ns.group(1)}, but the hub "
                    f"azurerm_eventhub.{hub} is in another namespace")
        if hub and group:
            r.note(f"{fname}: hub azurerm_eventhub.{hub}, consumer group azurerm_eventhub_consumer_group.{group}")

    # 6. Event Grid schemas --------------------------------------------------------------------
    all_settings = dict(set_settings)
    for settings in per_function.values():
        all_settings.update(settings)
    check_event_grid_schemas(repo, infra, all_settings, r)

    # 7. Resource providers ----------------------------------------------------------------------
    check_resource_providers(infra, r)

    # 8. Variable values -------------------------------------------------------------------------
    check_variable_values(infra, r)
    return r


def published_schema(repo, r):
    """The Event Grid schema crates/movielake/src/clients/eventgrid.rs publishes, from its content type and
    envelope, or None (reported) when it cannot tell."""
    f = pathlib.Path(repo, "crates/movielake/src/clients/eventgrid.rs")
    if not f.exists():
        r.error(f"{f}: missing: cannot tell which Event Grid schema the code publishes")
        return None
    code = "\n".join(line.split("//")[0] for line in f.read_text().splitlines())
    types = set(re.findall(r'"(application/[a-z0-9.+-]+)', code))
    cloud = {t for t in types if t.startswith("application/cloudevents")}
    if cloud and '"specversion"' in code:
        return CLOUDEVENTS, sorted(cloud)[0]
    if "application/json" in types and '"eventType"' in code and '"dataVersion"' in code:
        return EVENTGRID, "application/json"
    r.error(f"{f.relative_to(repo)}: cannot tell which Event Grid schema the code publishes: expected a "
            "CloudEvents content type (application/cloudevents-batch+json) with \"specversion\", or "
            "application/json with \"eventType\" and \"dataVersion\" (Event Grid schema)")
    return None


def decoder_schemas(repo, r):
    f = pathlib.Path(repo, "crates/movielake-core/src/host/eventgrid.rs")
    m = re.search(r"\benum\s+Schema\s*\{(.*?)\}", f.read_text(), re.S) if f.exists() else None
    if not m:
        r.error(f"{f}: no `enum Schema {{ ... }}`: cannot tell which Event Grid schemas bronze_to_silver reads")
        return None
    variants = re.findall(r"\b([A-Z][A-Za-z0-9]*)\b", m.group(1))
    return {DECODER_SCHEMAS[v] for v in variants if v in DECODER_SCHEMAS}


def schema_of(infra, body, arg, where, r):
    raw = body.get(arg)
    if raw is None:
        return DEFAULT_SCHEMA
    value = infra.string_value(raw)
    if value not in (CLOUDEVENTS, EVENTGRID):
        r.error(f"{where}: {arg} is {raw!r}: expected \"{CLOUDEVENTS}\" or \"{EVENTGRID}\" (a literal)")
        return None
    return value


def check_event_grid_schemas(repo, infra, settings, r):
    topics = {n: (f, b) for f, _, n, b in infra.m.resources("azurerm_eventgrid_topic")}
    published = published_schema(repo, r)
    readable = decoder_schemas(repo, r)
    # the topics the app is given to publish to: an app setting = azurerm_eventgrid_topic.<n>.endpoint
    targets = {}
    for key, value in settings.items():
        for name in re.findall(r"\bazurerm_eventgrid_topic\.([\w-]+)\.endpoint\b", str(value)):
            targets.setdefault(name, key)
    input_schemas = {}
    for name, (f, body) in topics.items():
        input_schemas[name] = schema_of(infra, body, "input_schema", infra.m.where(f, "azurerm_eventgrid_topic", name), r)
    for name, key in sorted(targets.items()):
        if name not in topics or published is None:
            continue
        schema, content_type = published
        f, _ = topics[name]
        if input_schemas[name] is not None and input_schemas[name] != schema:
            r.error(f"{infra.m.where(f, 'azurerm_eventgrid_topic', name)}: azurerm_eventgrid_topic.{name} has "
                    f"input_schema {input_schemas[name]}, but the code publishes {schema} ({content_type}, "
                    f"crates/movielake/src/clients/eventgrid.rs) to it (app setting {key}): Event Grid refuses every "
                    f"batch with HTTP 400; set input_schema = \"{schema}\"")
        else:
            r.note(f"the code publishes {schema} ({content_type}) to azurerm_eventgrid_topic.{name} ({key})")
    for rtype in ("azurerm_eventgrid_event_subscription", "azurerm_eventgrid_system_topic_event_subscription"):
        for f, _, sname, body in infra.m.resources(rtype):
            where = infra.m.where(f, rtype, sname)
            delivered = schema_of(infra, body, "event_delivery_schema", where, r)
            if delivered is None:
                continue
            scope = re.search(r"\bazurerm_eventgrid_topic\.([\w-]+)\.id\b", str(body.get("scope", "")))
            if scope and scope.group(1) in input_schemas and input_schemas[scope.group(1)] is not None:
                given = input_schemas[scope.group(1)]
                if delivered not in DELIVERABLE[given]:
                    r.error(f"{where}: {rtype}.{sname} delivers {delivered}, but its topic "
                            f"azurerm_eventgrid_topic.{scope.group(1)} takes {given}, which Event Grid can only "
                            f"deliver as {' or '.join(sorted(DELIVERABLE[given]))}: set event_delivery_schema = "
                            f"\"{sorted(DELIVERABLE[given])[0]}\"")
            if readable is not None and body.get("azure_function_endpoint") and delivered not in readable:
                r.error(f"{where}: {rtype}.{sname} delivers {delivered}, which the handler's decoder does not "
                        "read (enum Schema in crates/movielake-core/src/host/eventgrid.rs)")


def provider_block(infra):
    for f, doc in infra.m.docs.items():
        for item in doc.get("provider", []):
            for pname, body in item.items():
                if unquote(pname) == "azurerm":
                    return f, body
    return None, None


def check_resource_providers(infra, r):
    f, body = provider_block(infra)
    if body is None:
        r.error('infra: no provider "azurerm" block: cannot tell which resource providers are registered')
        return
    raw = body.get("resource_providers_to_register")
    listed = [literal(x) for x in raw] if isinstance(raw, list) else None
    if listed is None or None in listed:
        r.error(f'{f.name}: provider "azurerm" must list resource_providers_to_register as literal strings '
                "(azurerm 5.x registers no resource provider by default: a fresh subscription fails with "
                "MissingSubscriptionRegistration)")
        return
    registered = {ns.lower(): ns for ns in listed}
    needed = {}   # namespace -> resource types
    for kind in ("resource", "data"):
        for tf, rtype, rname, _ in infra.m.blocks(kind):
            if not rtype.startswith("azurerm_") or (kind == "data" and rtype in NO_PROVIDER_DATA):
                continue
            namespaces = RESOURCE_PROVIDERS.get(rtype)
            if namespaces is None:
                r.error(f"{infra.m.where(tf, rtype, rname)}: {rtype} is not in RESOURCE_PROVIDERS of "
                        "infra/checks/consistency_check.py: add it with its resource provider namespace "
                        "(and register that namespace in the provider block)")
                continue
            for ns in (namespaces,) if isinstance(namespaces, str) else namespaces:
                needed.setdefault(ns, set()).add(rtype)
    for ns, types in sorted(needed.items()):
        if ns.lower() not in registered:
            r.error(f'{f.name}: provider "azurerm" does not register {ns}, which {", ".join(sorted(types))} '
                    f"need(s): add \"{ns}\" to resource_providers_to_register (azurerm 5.x registers none by "
                    "default; apply fails with MissingSubscriptionRegistration on a subscription that never used it)")
    needed_lower = {ns.lower() for ns in needed}
    extra_lower = {ns.lower() for ns in EXTRA_NAMESPACES}
    for low, ns in sorted(registered.items()):
        if low not in needed_lower and low not in extra_lower:
            r.error(f'{f.name}: provider "azurerm" registers {ns}, which no resource here needs: remove it, '
                    "or add it to EXTRA_NAMESPACES in infra/checks/consistency_check.py with the reason")
    r.note(f"resource providers registered: {', '.join(sorted(registered.values()))}")


def variable_validations(infra):
    """{variable: [(condition expression, error message)]}"""
    out = {}
    for name, (_, body) in infra.vars.items():
        for v in body.get("validation", []) if isinstance(body.get("validation"), list) else []:
            cond = v.get("condition")
            if isinstance(cond, str) and cond.startswith("${") and cond.endswith("}"):
                cond = cond[2:-1]
            out.setdefault(name, []).append((cond, literal(v.get("error_message")) or "(no message)"))
    return out


def check_variable_values(infra, r):
    defaults = {}
    for name, (_, body) in infra.vars.items():
        if "default" in body:
            try:
                defaults[name] = tfexpr.hcl_value(body["default"])
            except (tfexpr.Unsupported, tfexpr.EvalError):
                pass
    validations = variable_validations(infra)
    files = [("defaults in variables.tf", {})]
    for f in sorted(pathlib.Path(infra.m.folder).glob("*.tfvars")):
        try:
            doc = hcl2.loads(f.read_text())
        except Exception as e:  # python-hcl2 raises lark errors with the position
            r.error(f"{f.name}: cannot parse: {e}")
            continue
        files.append((f.name, {k: v for k, v in doc.items() if not k.startswith("__")}))
    checked = 0
    for fname, raw_values in files:
        values = dict(defaults)
        for key, raw in raw_values.items():
            if key not in infra.vars:
                r.error(f"{fname}: {key} is not a variable of infra/variables.tf (a misspelt name is silently "
                        "ignored by Terraform with a warning)")
                continue
            try:
                values[key] = tfexpr.hcl_value(raw)
            except (tfexpr.Unsupported, tfexpr.EvalError) as e:
                r.error(f"{fname}: cannot evaluate the value of {key}: {e}")
        names = raw_values.keys() if raw_values else defaults.keys()
        for key in sorted(n for n in names if n in validations and n in values):
            for cond, message in validations[key]:
                checked += 1
                try:
                    ok = tfexpr.truth(tfexpr.evaluate(cond, values))
                except tfexpr.Unsupported as e:
                    r.error(f"variables.tf: the validation of {key} cannot be evaluated offline ({e}): keep "
                            "conditions to what infra/checks/tfexpr.py evaluates, or extend it")
                    continue
                except tfexpr.EvalError as e:
                    ok, message = False, f"{message} (evaluating it fails: {e})"
                if not ok:
                    r.error(f"{fname}: {key} = {json.dumps(values[key])} fails the validation of variable "
                            f"\"{key}\": {message}")
    r.note(f"variable values: {checked} validation(s) evaluated over {len(files) - 1} tfvars file(s) and the defaults")


def resolve_binding_ref(value, rtype, settings, resources, infra, where, r):
    """The Terraform resource a function.json value names: `%SETTING%` -> the app setting's value
    must reference <rtype>.<name>.name; a literal must equal that resource's (literal) name."""
    if not isinstance(value, str):
        r.error(f"{where}: missing")
        return None
    m = PLACEHOLDER.fullmatch(value)
    if m:
        setting = m.group(1)
        if setting not in settings:
            return None  # reported with the settings
        ref = re.search(rf"{rtype}\.([\w-]+)\.name", str(settings[setting]))
        if not ref or ref.group(1) not in resources:
            r.error(f"{where} is %{setting}%, but the app setting {setting} is not the name of a {rtype} "
                    f"created here (it is {settings[setting]!r}): set it to {rtype}.<name>.name")
            return None
        return ref.group(1)
    for name, body in resources.items():
        if infra.string_value(body.get("name")) == value:
            return name
    if value == "$Default" and rtype == "azurerm_eventhub_consumer_group":
        r.error(f"{where} is $Default: give the Function its own consumer group (created in Terraform)")
        return None
    r.error(f"{where} is '{value}', but no {rtype} here is named that")
    return None


def main():
    ap = argparse.ArgumentParser(description="code <-> infrastructure consistency")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--infra", default=None)
    a = ap.parse_args()
    infra_dir = a.infra or str(pathlib.Path(a.repo, "infra"))
    r = check(a.repo, infra_dir)
    for n in r.notes:
        print("  ok:", n)
    for e in r.errors:
        print("ERROR", e)
    print(f"consistency: {len(r.errors)} problem(s)")
    return 1 if r.errors else 0


if __name__ == "__main__":
    sys.exit(main())
