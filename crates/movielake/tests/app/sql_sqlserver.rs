//! The SQL Server adapter against Microsoft's TDS test server (`mssql-mock-tds`), which stands in
//! for SQL Server / Azure SQL (none runs here). It speaks real TDS: pre-login, LOGIN7 with the
//! Entra token (FEDAUTH), Azure SQL's login redirect, result sets of integers and Unicode
//! text, server errors. It answers only the statements a test registers, by their exact text,
//! so these tests also pin the SQL each pull sends. It cannot send `datetime2` or `decimal`
//! values (the adapter selects times as text; decimals are decoded by a unit test), its TLS
//! cannot be used (see the end of this file), and it does not run the SQL, check the token,
//! nor know `rowversion` semantics: those are exercised against no real server.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Duration;
use movielake::clients::sql::{MsConnect, SqlError, SqlServer, SqlSource};
use movielake::lake::Lake;
use movielake::pipelines::sql_pull::{PullError, PullSettings, pull_table, watermark_path};
use movielake_core::sources::sql::watermark::Watermark;
use movielake_core::sources::sql::{Dialect, USERS};
use mssql_mock_tds::{
    ColumnDefinition, ColumnValue, ConnectionStore, MockTdsServer, QueryRegistry, QueryResponse, Row, SqlDataType,
    TerminalError,
};
use tokio::sync::Mutex;

use crate::sql_lifecycle::Lakehouse;

struct Mock {
    addr: SocketAddr,
    queries: Arc<Mutex<QueryRegistry>>,
    connections: Arc<Mutex<ConnectionStore>>,
}

async fn serve(server: MockTdsServer) -> Mock {
    let mock = Mock {
        addr: server.local_addr(),
        queries: server.query_registry(),
        connections: server.connection_store(),
    };
    tokio::spawn(server.run());
    mock
}

async fn mock() -> Mock {
    serve(MockTdsServer::new("127.0.0.1:0").await.expect("mock TDS server")).await
}

fn url(addr: SocketAddr) -> String {
    format!("sqlserver://127.0.0.1:{}/platform?encrypt=false", addr.port())
}

fn token() -> MsConnect {
    MsConnect {
        ca_file: None,
        token: Some("eyJ0eXAi.test-token".into()),
    }
}

/// A nullable text column as the server sends `nvarchar` results of `CONVERT(…) + N'Z'`.
fn text(value: Option<&str>) -> ColumnValue {
    match value {
        Some(s) => ColumnValue::NVarCharMax(vec![s.encode_utf16().collect()]),
        None => ColumnValue::NVarCharMaxNull,
    }
}

/// Users rows: (user_id, display_name, updated_at, row_version).
fn users(rows: &[(&str, Option<&str>, &str, i64)]) -> QueryResponse {
    let mut columns: Vec<ColumnDefinition> = USERS
        .columns
        .iter()
        .map(|c| ColumnDefinition::new(*c, SqlDataType::NVarCharMax))
        .collect();
    columns.push(ColumnDefinition::new("row_version", SqlDataType::BigInt));
    let rows = rows
        .iter()
        .map(|(id, name, at, version)| {
            Row::new(vec![
                text(Some(id)),
                text(Some(&format!("{id}@example.com"))),
                text(*name),
                text(Some("FR")),
                text(Some("2024-01-01T00:00:00Z")),
                text(Some(at)),
                text(None),
                ColumnValue::BigInt(*version),
            ])
        })
        .collect();
    QueryResponse::new(columns, rows)
}

fn ceiling(version: i64, at: &str) -> QueryResponse {
    QueryResponse::new(
        vec![
            ColumnDefinition::new("ceiling", SqlDataType::BigInt),
            ColumnDefinition::new("at", SqlDataType::NVarChar),
        ],
        vec![Row::new(vec![
            ColumnValue::BigInt(version),
            ColumnValue::NVarChar(at.into()),
        ])],
    )
}

#[tokio::test]
async fn a_pull_signs_in_with_the_entra_token_and_reads_row_versions_page_by_page() {
    let mock = mock().await;
    {
        let mut q = mock.queries.lock().await;
        q.register(
            Dialect::SqlServer.ceiling_sql(5),
            ceiling(110, "2024-05-01T10:00:00.1234567Z"),
        );
        q.register(
            Dialect::sqlserver_changes(&USERS, 2, 0, 110),
            users(&[
                ("u1", Some("Ada"), "2024-05-01T09:00:00.000000Z", 101),
                ("u2", None, "2024-05-01T09:30:00.5Z", 105),
            ]),
        );
        q.register(
            Dialect::sqlserver_changes(&USERS, 2, 106, 110),
            users(&[("u1", Some("Ada L."), "2024-05-01T09:45:00Z", 107)]),
        );
    }
    let db = SqlServer::connect_with(&url(mock.addr), &token()).await.expect("login");
    let house = Lakehouse::new();
    let (sink, lake, tables) = (house.sink(), &house.lake, &house.tables);
    let settings = PullSettings {
        lag: Duration::seconds(5),
        key_check: None,
        page_rows: 2,
        ..PullSettings::default()
    };
    let pulled = pull_table(&sink, &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    assert_eq!((pulled.rows, pulled.pages, pulled.counts.silver), (3, 2, 3));
    let stored: Watermark = serde_json::from_slice(
        &lake
            .get(&watermark_path("platform", &USERS))
            .await
            .expect("watermark")
            .bytes,
    )
    .expect("json");
    assert_eq!(
        stored.row_version,
        Some(110),
        "the next pull starts at the ceiling read"
    );
    assert!(stored.recent.is_empty(), "row versions need no overlap");

    let history = tables
        .sql(
            "silver/sql/users_history",
            "SELECT user_id, display_name, CAST(valid_from AS VARCHAR) AS f, CAST(is_current AS VARCHAR) AS c FROM t \
             ORDER BY user_id, valid_from",
        )
        .await
        .expect("history");
    assert_eq!(
        crate::sql_postgres::strings(&history),
        [
            ["u1", "Ada", "2024-05-01T09:00:00Z", "false"],
            ["u1", "Ada L.", "2024-05-01T09:45:00Z", "true"],
            ["u2", "", "2024-05-01T09:30:00.500Z", "true"],
        ]
    );
    // Bronze: the rows as read, row_version included; the sidecar has the version range.
    let sidecar = pulled.bronze[1].replace("part-00001.csv.gz", "_extract.json");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&lake.get(&sidecar).await.expect("sidecar").bytes).expect("json");
    assert_eq!(sidecar["row_versions"], serde_json::json!({"from": 106, "to": 110}));
    assert_eq!(sidecar["dialect"], "sqlserver");
    assert_eq!(
        sidecar["query"].as_str(),
        Some(Dialect::sqlserver_changes(&USERS, 2, 106, 110).as_str()),
        "the statement the page ran, page size included"
    );
    let gz = lake.get(&pulled.bronze[0]).await.expect("bronze").bytes;
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut csv).expect("gzip");
    assert!(
        csv.starts_with("user_id,email,display_name,country,created_at,updated_at,deleted_at,row_version\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\nu2,u2@example.com,,FR,"),
        "NULL as an empty field: {csv}"
    );

    let logins = mock.connections.lock().await;
    let login = logins.all().values().next().expect("a connection");
    assert!(login.authenticated);
    assert_eq!(login.received_token_as_string().as_deref(), Some("eyJ0eXAi.test-token"));
    assert_eq!(login.received_database.as_deref(), Some("platform"));
}

#[tokio::test]
async fn a_login_redirected_by_the_gateway_signs_in_where_it_is_sent() {
    let node = mock().await;
    node.queries
        .lock()
        .await
        .register(Dialect::SqlServer.ceiling_sql(0), ceiling(7, "2024-05-01T10:00:00Z"));
    let gateway = serve(
        MockTdsServer::new_with_redirection("127.0.0.1:0", "127.0.0.1", node.addr.port())
            .await
            .expect("gateway"),
    )
    .await;
    let db = SqlServer::connect_with(&url(gateway.addr), &token())
        .await
        .expect("redirected login");
    let c = db.ceiling(Duration::zero()).await.expect("ceiling");
    assert_eq!(c.row_version, Some(7));
    let at_node = node.connections.lock().await;
    let login = at_node.all().values().next().expect("signed in at the node");
    assert!(login.authenticated);
    assert_eq!(login.received_token_as_string().as_deref(), Some("eyJ0eXAi.test-token"));
}

#[tokio::test]
async fn server_errors_are_sorted_by_what_happens_next() {
    let mock = mock().await;
    {
        let mut q = mock.queries.lock().await;
        q.register(
            Dialect::SqlServer.ceiling_sql(0),
            QueryResponse::error_only(TerminalError::new(
                40613,
                20,
                "Database 'platform' on server 'x' is not currently available.",
            )),
        );
        q.register(
            Dialect::SqlServer.keys_sql(&USERS),
            QueryResponse::error_only(TerminalError::new(208, 16, "Invalid object name 'dbo.users'.")),
        );
    }
    let db = SqlServer::connect_with(&url(mock.addr), &token()).await.expect("login");
    let e = db.ceiling(Duration::zero()).await.expect_err("failover");
    assert!(matches!(e, SqlError::Unreachable(_)), "retry later: {e}");
    let e = db.keys(&USERS).await.expect_err("no table");
    assert!(
        matches!(&e, SqlError::Refused(m) if m.contains("208") && m.contains("dbo.users")),
        "a person must look: {e}"
    );
    let house = Lakehouse::new();
    let (sink, lake) = (house.sink(), &house.lake);
    let settings = PullSettings {
        lag: Duration::zero(),
        ..PullSettings::default()
    };
    let e = pull_table(&sink, &db, "platform", &USERS, settings)
        .await
        .expect_err("unavailable");
    assert!(matches!(e, PullError::Source(SqlError::Unreachable(_))), "{e}");
    assert!(
        lake.get(&watermark_path("platform", &USERS)).await.is_err(),
        "nothing advanced"
    );

    let closed = SqlServer::connect_with("sqlserver://127.0.0.1:1/platform?encrypt=false", &token())
        .await
        .err();
    assert!(matches!(closed, Some(SqlError::Unreachable(_))), "{closed:?}");
    let no_login = SqlServer::connect_with(&url(mock.addr), &MsConnect::default())
        .await
        .err();
    assert!(matches!(no_login, Some(SqlError::Setting(_))), "{no_login:?}");
}

// Not tested here: TLS. The stand-in frames its side of the TLS handshake in TabularResult
// packets; tiberius 0.13 accepts only PreLogin packets there ("expected a pre-login packet
// during the TLS handshake"), so no encrypted login completes against it. The README says so.
